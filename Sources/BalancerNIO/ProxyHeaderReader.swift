import BalancerCore
import NIOCore

/// First in a `by-path` connection's pipeline, before TLS, when its listener takes PROXY headers:
/// hands the raw first bytes to the connection (whose gate reads the header of a trusted source,
/// or refuses one from any other), passes on what follows the header, and steps aside.
final class ProxyHeaderReader: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private var connection: PathConnection?
    private var buffered = ByteBuffer()

    init(connection: PathConnection) {
        self.connection = connection
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var chunk = unwrapInboundIn(data)
        buffered.writeBuffer(&chunk)
        offer(context: context, endOfInput: false)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            offer(context: context, endOfInput: true)
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func offer(context: ChannelHandlerContext, endOfInput: Bool) {
        guard let connection else { return }
        switch connection.rawPreamble(buffered, endOfInput: endOfInput) {
        case .needMore:
            context.read()
        case .refuse:
            self.connection = nil
            buffered = ByteBuffer()
        case .pass(_, let taken):
            self.connection = nil
            buffered.moveReaderIndex(forwardBy: min(taken, buffered.readableBytes))
            let rest = buffered
            buffered = ByteBuffer()
            if rest.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(rest)) }
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }
}

@available(*, unavailable)
extension ProxyHeaderReader: Sendable {}
