import NIOCore

/// Splices two channels: what one reads, the other writes. Backpressure comes from `read()`
/// alone: a side reads only while its partner can write, so nothing buffers without bound.
/// An EOF on one side becomes a half-close of the other; a full close of one side closes the
/// other once the bytes already handed to it are written.
///
/// Until the node has sent its first byte, the client side keeps what it forwarded (up to
/// `replayLimit`), and a node side that closes without a byte may hand its client to another
/// node instead of closing it: a node that resets a connection it never answered (a server
/// going down with connections still in its accept queue) is then invisible to the client.
final class GlueHandler {
    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private var inputClosed = false
    private var outputClosed = false
    /// Bytes this side has read from its socket.
    private(set) var bytesRead = 0

    // Client side: what the node has been sent, while the node has not answered yet.
    private var replay: [ByteBuffer]?
    private var replayBytes = 0
    private let replayLimit: Int

    // Node side: asked once, when the node closes before its first byte; true means "handled".
    private var onSilentClose: (() -> Bool)?

    /// A TLS handler sits between this handler and the socket, holding bytes the channel cannot see.
    private let overTLS: Bool
    /// How long bytes still queued may take to leave once the partner is gone: a peer that stopped
    /// reading would otherwise hold this side open for good.
    var lingerLimit: TimeAmount?

    private init(replayLimit: Int, overTLS: Bool, onSilentClose: (() -> Bool)?) {
        self.replayLimit = replayLimit
        self.replay = replayLimit > 0 ? [] : nil
        self.overTLS = overTLS
        self.onSilentClose = onSilentClose
    }

    /// Two handlers glued to each other: add one to each channel.
    static func matchedPair() -> (GlueHandler, GlueHandler) {
        let first = GlueHandler(replayLimit: 0, overTLS: false, onSilentClose: nil)
        let second = GlueHandler(replayLimit: 0, overTLS: false, onSilentClose: nil)
        first.partner = second
        second.partner = first
        return (first, second)
    }

    /// The client side of a proxied connection, keeping up to `replayLimit` bytes for a redispatch.
    static func clientSide(replayLimit: Int, overTLS: Bool = false) -> GlueHandler {
        GlueHandler(replayLimit: replayLimit, overTLS: overTLS, onSilentClose: nil)
    }

    /// A node side; `onSilentClose` may take over when the node closes without sending a byte.
    static func nodeSide(overTLS: Bool = false, onSilentClose: @escaping () -> Bool) -> GlueHandler {
        GlueHandler(replayLimit: 0, overTLS: overTLS, onSilentClose: onSilentClose)
    }

    /// The bytes forwarded so far can still be replayed to another node.
    var canReplay: Bool { replay != nil }

    /// Bytes read before the splice (a classifier's peek) that the node must get first.
    func seed(_ bytes: ByteBuffer) {
        guard bytes.readableBytes > 0 else { return }
        keepForReplay(bytes)
    }

    /// The client half-closed before the splice: the node gets the EOF after the seeded bytes.
    func seedEndOfInput() {
        inputClosed = true
    }

    /// Glues this client side to a (new) node side: replays what earlier nodes were sent, passes on
    /// an EOF the client already sent, and resumes reading.
    func attach(_ node: GlueHandler) {
        partner = node
        node.partner = self
        for buffer in replay ?? [] { node.partnerWrite(NIOAny(buffer)) }
        node.partnerFlush()
        if inputClosed { node.partnerWriteEOF() }
        if pendingRead && node.partnerIsWritable {
            pendingRead = false
            context?.read()
        }
    }

    private func keepForReplay(_ buffer: ByteBuffer) {
        guard replay != nil else { return }
        replayBytes += buffer.readableBytes
        if replayBytes > replayLimit {
            replay = nil
        } else {
            replay?.append(buffer)
        }
    }
}

@available(*, unavailable)
extension GlueHandler: Sendable {}

// MARK: - Calls from the partner

extension GlueHandler {
    private func partnerWrite(_ data: NIOAny) {
        context?.write(data, promise: nil)
    }

    private func partnerFlush() {
        context?.flush()
    }

    private func partnerWriteEOF() {
        guard let context, !outputClosed else { return }
        outputClosed = true
        if inputClosed {
            // NIO turns an output close on a channel whose input is gone into a full close,
            // which would drop writes still queued: let them drain first.
            closeAfterPendingWrites(context)
        } else {
            context.close(mode: .output, promise: nil)
        }
    }

    private func partnerClosed() {
        guard let context else { return }
        closeAfterPendingWrites(context)
    }

    private func partnerBecameWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }

    /// The node answered: what was kept for a replay is no longer needed.
    private func partnerAnswered() {
        replay = nil
    }

    private var partnerIsWritable: Bool {
        context?.channel.isWritable ?? false
    }

    private func closeAfterPendingWrites(_ context: ChannelHandlerContext) {
        // Mostly every byte is already out (flushes write at once): then close without the empty write.
        if !overTLS, (try? context.channel.syncOptions?.getOption(.bufferedWritableBytes)) == 0 {
            context.close(promise: nil)
            return
        }
        // Writes complete in order, so an empty write's promise fires once everything before it is out.
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(NIOAny(ByteBuffer()), promise: promise)
        let giveUp = lingerLimit.map { limit in
            context.eventLoop.assumeIsolated().scheduleTask(in: limit) { context.close(promise: nil) }
        }
        promise.futureResult.assumeIsolated().whenComplete { _ in
            giveUp?.cancel()
            context.close(promise: nil)
        }
    }

    /// A node side that closes before its first byte offers its client to `onSilentClose`.
    private func handedOverAfterSilentClose() -> Bool {
        guard bytesRead == 0, let handler = onSilentClose else { return false }
        onSilentClose = nil
        guard handler() else { return false }
        partner = nil
        return true
    }
}

// MARK: - Channel events

extension GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        if bytesRead == 0 {
            partner?.partnerAnswered()
            // The node answered, so it will not be replaced: let go of what a redispatch needed.
            onSilentClose = nil
        }
        bytesRead += buffer.readableBytes
        keepForReplay(buffer)
        if let partner {
            partner.partnerWrite(data)
        } else if replay == nil {
            // Between two nodes with nothing left to replay from: the bytes have nowhere to go.
            context.close(promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.partnerFlush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !handedOverAfterSilentClose() {
            partner?.partnerClosed()
        }
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            inputClosed = true
            if handedOverAfterSilentClose() {
                context.close(promise: nil)
            } else {
                partner?.partnerWriteEOF()
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // The partner is closed (or the client handed on) by channelInactive once this side is gone.
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            partner?.partnerBecameWritable()
        }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if partner?.partnerIsWritable ?? false {
            context.read()
        } else {
            pendingRead = true
        }
    }
}
