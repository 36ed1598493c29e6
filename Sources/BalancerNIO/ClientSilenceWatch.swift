import NIOCore

/// Sits in front of TLS on a `by-path` client connection until the client's first byte, then
/// leaves the pipeline. A connection closed before that byte is a front balancer's TCP check or
/// a port scan: it ends `closed`, not as a failed TLS handshake that warns the operator each time.
final class ClientSilenceWatch: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let connection: PathConnection

    init(connection: PathConnection) {
        self.connection = connection
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.clientSpoke = true
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
