import BalancerCore
import NIOCore

/// An upgraded `by-path` connection (a WebSocket after `101 Switching Protocols`): the client's
/// and the node's bytes relayed both ways until either side closes, as in swift-nio-examples'
/// `GlueHandler`: a side is read only while the other can take more. Loop-bound.
final class Tunnel {
    private var exchange: NodeExchange?
    private var client: TunnelGlue?
    private var node: TunnelGlue?
    /// Sides whose HTTP codec has left the pipeline: bytes move once both have.
    private var ready: Set<ConnectionSide> = []
    private var closed = false

    init(exchange: NodeExchange) {
        self.exchange = exchange
    }

    /// Puts `side`'s glue at the end of `pipeline`, whose HTTP handlers then leave.
    func attach(_ side: ConnectionSide, to pipeline: ChannelPipeline.SynchronousOperations) throws {
        let glue = TunnelGlue(tunnel: self)
        try pipeline.addHandler(glue)
        if side == .client { client = glue } else { node = glue }
    }

    /// Puts the node side's glue on `node`'s pipeline, which drops its HTTP handlers.
    static func attach(_ tunnel: Tunnel, toNode node: NodeHTTPHandler) {
        guard let context = node.context else {
            tunnel.close()
            return
        }
        let pipeline = context.pipeline.syncOperations
        do {
            try tunnel.attach(.node, to: pipeline)
            // The decoder goes last: what it holds beyond the 101 is forwarded to the glue.
            pipeline.removeHandler(context: context, promise: nil)
            HTTPHandlers.removeClientCodec(from: pipeline).assumeIsolated().whenComplete { result in
                tunnel.codecRemoved(from: .node, result)
            }
        } catch {
            tunnel.close()
        }
    }

    /// `side`'s HTTP codec is gone (its decoders leave on a later turn of the loop, and until
    /// then a write to that side would reach them): once both are, bytes move.
    func codecRemoved(from side: ConnectionSide, _ result: Result<Void, any Error>) {
        guard case .success = result else {
            close()
            return
        }
        ready.insert(side)
        guard ready.count == 2, let client, let node, !closed else { return }
        client.partner = node
        node.partner = client
        client.startRelaying()
        node.startRelaying()
    }

    /// Bytes moved: the connection is not idle.
    func activity() {
        exchange?.tunnelActivity()
    }

    func clientWritable() {
        node?.partnerBecameWritable()
    }

    /// Closes both sides (each after what is queued for it); the exchange ends once.
    func close() {
        guard !closed else { return }
        closed = true
        client?.closeWhenFlushed()
        node?.closeWhenFlushed()
        client = nil
        node = nil
        let exchange = self.exchange
        self.exchange = nil
        exchange?.tunnelClosed()
    }
}

@available(*, unavailable)
extension Tunnel: Sendable {}

/// One side of a `Tunnel`: the last handler of its channel once the HTTP handlers left.
final class TunnelGlue: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var tunnel: Tunnel?
    var partner: TunnelGlue?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private var reading = false
    /// What arrived before the other side was ready (what a decoder held beyond the upgrade).
    private var early: [ByteBuffer] = []

    init(tunnel: Tunnel) {
        self.tunnel = tunnel
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
        tunnel = nil
    }

    /// Both sides are ready: what arrived early goes over, and reads begin.
    func startRelaying() {
        reading = true
        if !early.isEmpty {
            for buffer in early { partner?.write(buffer) }
            early = []
            partner?.context?.flush()
        }
        try? context?.channel.syncOptions?.setOption(.autoRead, value: true)
        context?.read()
    }

    func partnerBecameWritable() {
        guard pendingRead, reading, let context else { return }
        pendingRead = false
        context.read()
    }

    func closeWhenFlushed() {
        guard let context else { return }
        partner = nil
        tunnel = nil
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(NIOAny(ByteBuffer()), promise: promise)
        promise.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard let partner, reading else {
            early.append(buffer)
            return
        }
        partner.write(buffer)
        tunnel?.activity()
    }

    private func write(_ buffer: ByteBuffer) {
        context?.write(NIOAny(buffer), promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.context?.flush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        tunnel?.close()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            tunnel?.close()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        tunnel?.close()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if reading, partner?.context?.channel.isWritable ?? false {
            context.read()
        } else {
            pendingRead = true
        }
    }
}

@available(*, unavailable)
extension TunnelGlue: Sendable {}
