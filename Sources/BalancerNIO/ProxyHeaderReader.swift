import BalancerCore
import NIOCore

/// The client's IP address as a `by-path` listener forwards it (`X-Forwarded-For`): the peer's,
/// or the client a trusted front balancer named in its PROXY header. Loop-bound.
final class ClientAddress {
    var ip: String?
}

@available(*, unavailable)
extension ClientAddress: Sendable {}

/// First in a `by-path` connection's pipeline, before TLS, when its listener takes PROXY headers:
/// hands the raw first bytes to the connection's relay (whose machine reads the header of a
/// trusted source, or refuses one from any other), passes on what follows the header, and steps aside.
final class ProxyHeaderReader: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private var relay: NIORelay?
    private var buffered = ByteBuffer()

    func attach(_ relay: NIORelay) {
        self.relay = relay
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
        guard let relay else { return }
        switch relay.rawPreamble(buffered, endOfInput: endOfInput) {
        case .needMore:
            context.read()
        case .closed:
            self.relay = nil
            buffered = ByteBuffer()
        case .done(let taken):
            self.relay = nil
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
