import NIOCore

/// Writes bytes before anything else on a new client connection, e.g. the PROXY header a front
/// balancer sends ahead of a client's TLS handshake; then steps aside. Add it first in the pipeline.
public final class ConnectionPreamble: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private let bytes: [UInt8]

    /// A preamble of `bytes`.
    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    public func channelActive(context: ChannelHandlerContext) {
        // Written before the handlers behind this one hear of the connection (a TLS client's ClientHello).
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
        context.fireChannelActive()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

@available(*, unavailable)
extension ConnectionPreamble: Sendable {}
