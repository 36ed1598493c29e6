import BalancerCore
import NIOCore

/// One side of a connection the NIO executor relays: the last handler of the client's or the
/// node's pipeline. It reports what its channel does to the connection's `NIORelay` and carries out
/// what the relay asks (write, half-close, close once flushed). Backpressure comes from `read()`
/// alone, as in swift-nio-examples' `GlueHandler`: a side reads only while its partner can write,
/// so nothing buffers without bound. It makes no decision of its own.
final class RelayGlue {
    let side: ConnectionSide
    /// The connection; cleared when it is over, so nothing outlives it.
    var relay: NIORelay?
    /// The other side, once connected: whose writability gates this side's reads.
    var partner: RelayGlue?
    private(set) var context: ChannelHandlerContext?
    private var pendingRead = false
    /// Reads are off until the relay allows them (the client's, until its node is connected).
    private var readsAllowed: Bool
    /// Reads do not wait for a partner (a classifier reading the client's first bytes).
    private var readsAlone = false
    private(set) var inputClosed = false
    private var outputClosed = false

    init(side: ConnectionSide, relay: NIORelay, readsAllowed: Bool) {
        self.side = side
        self.relay = relay
        self.readsAllowed = readsAllowed
    }

    // MARK: - What the relay asks

    /// Reads go on for good (autoRead), each waiting for the partner to take more.
    func startReading() {
        readsAllowed = true
        readsAlone = false
        guard let channel = context?.channel else { return }
        // Reads go through the pipeline, so each passes `read(context:)`; autoRead keeps them coming.
        try? channel.syncOptions?.setOption(.autoRead, value: true)
        channel.read()
    }

    /// One read that waits for no partner: the client's first bytes, before a node is chosen.
    func readOnce() {
        readsAllowed = true
        readsAlone = true
        context?.channel.read()
    }

    /// No more reads until `startReading()` (routing and connecting).
    func stopReading() {
        readsAllowed = false
        readsAlone = false
    }

    func write(_ buffer: ByteBuffer) {
        context?.write(NIOAny(buffer), promise: nil)
    }

    func flush() {
        context?.flush()
    }

    /// Shuts writing down once what is queued is out.
    func halfClose() {
        guard let context, !outputClosed else { return }
        outputClosed = true
        if inputClosed {
            // NIO turns an output close on a channel whose input is gone into a full close,
            // which would drop writes still queued: let them drain first.
            whenFlushed { context.close(promise: nil) }
        } else {
            context.close(mode: .output, promise: nil)
        }
    }

    /// Calls `done` once every byte written so far has left (at once when nothing is queued).
    func whenFlushed(_ done: @escaping () -> Void) {
        guard let context, context.channel.isActive else {
            done()
            return
        }
        // Mostly every byte is already out (flushes write at once): then no empty write is needed.
        if (try? context.channel.syncOptions?.getOption(.bufferedWritableBytes)) == 0 {
            done()
            return
        }
        // Writes complete in order, so an empty write's promise fires once everything before it is out.
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(NIOAny(ByteBuffer()), promise: promise)
        promise.futureResult.assumeIsolated().whenComplete { _ in done() }
    }

    /// Bytes are still queued for the socket.
    var hasQueuedBytes: Bool {
        guard let channel = context?.channel, channel.isActive else { return false }
        return ((try? channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0) > 0
    }

    /// Closes the channel; the relay hears no more from it.
    func close() {
        relay = nil
        partner = nil
        context?.close(promise: nil)
    }

    private var partnerTakesMore: Bool {
        readsAlone || (partner?.context?.channel.isWritable ?? false)
    }

    private func partnerBecameWritable() {
        if pendingRead, readsAllowed {
            pendingRead = false
            context?.read()
        }
    }
}

@available(*, unavailable)
extension RelayGlue: Sendable {}

// MARK: - Channel events

extension RelayGlue: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.partner = nil
        self.relay = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        relay?.channelActive(side)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        relay?.read(unwrapInboundIn(data), from: side)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        relay?.readComplete(from: side)
    }

    func channelInactive(context: ChannelHandlerContext) {
        relay?.inactive(side)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            inputClosed = true
            relay?.inputEnded(side)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        relay?.failed(side, error)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if readsAllowed, partnerTakesMore {
            context.read()
        } else {
            pendingRead = true
        }
    }
}
