import BalancerCore
import NIOCore
import NIOHTTP1
import NIOTLS

/// The last handler of a `by-path` node connection (after TLS and the HTTP/1.1 client codec). In
/// use, it hands the node's response parts to its request's `NodeExchange` and reads only while
/// the client can take more; idle in a pool, it notices the node closing the connection. It
/// makes no decision of its own.
final class NodeHTTPHandler {
    let key: NodePoolKey
    /// The request using the connection; nil while it idles.
    var exchange: NodeExchange?
    /// The pool holding it while it idles.
    var pool: NodePool?
    private(set) var context: ChannelHandlerContext?
    /// The TLS handshake is done (or there is no TLS): requests may be written.
    private(set) var ready: Bool
    private var pendingRead = false
    private var closed = false

    init(key: NodePoolKey, overTLS: Bool) {
        self.key = key
        self.ready = !overTLS
    }

    /// The connection is still open and not closing.
    var isOpen: Bool { !closed && (context?.channel.isActive ?? false) }

    var isWritable: Bool { context?.channel.isWritable ?? false }

    func write(_ part: HTTPClientRequestPart) {
        context?.write(NIOAny(part), promise: nil)
    }

    func flush() {
        context?.flush()
    }

    /// A read waiting for the client to take more goes ahead.
    func resumeReading() {
        guard pendingRead, let context else { return }
        pendingRead = false
        context.read()
    }

    /// Closes the connection; its request hears no more from it.
    func close() {
        exchange = nil
        pool?.closed(self)
        pool = nil
        guard !closed else { return }
        closed = true
        context?.close(promise: nil)
    }

    /// The tunnel takes the connection over: this handler leaves the pipeline.
    func detach() {
        exchange = nil
        closed = true
    }
}

@available(*, unavailable)
extension NodeHTTPHandler: Sendable {}

extension NodeHTTPHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        guard let exchange else {
            // A node that speaks on an idle connection is not to be trusted with the next request.
            close()
            return
        }
        exchange.nodeRead(part)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        exchange?.nodeReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent {
            ready = true
            exchange?.nodeReady()
        } else if let event = event as? ChannelEvent, event == .inputClosed {
            // The node is done with the connection: a half-open one is of no use to HTTP.
            closed(context: context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let exchange = self.exchange
        self.exchange = nil
        exchange?.nodeFailed(error)
        close()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed(context: context)
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { exchange?.nodeWritable() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if exchange?.clientTakesMore ?? true {
            context.read()
        } else {
            pendingRead = true
        }
    }

    private func closed(context: ChannelHandlerContext) {
        let exchange = self.exchange
        self.exchange = nil
        exchange?.nodeFailed(ChannelError.eof)
        close()
    }
}
