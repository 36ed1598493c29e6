import BalancerCore
import Logging
import NIOCore

/// What the access log says about one proxied connection; filled in as the connection lives.
/// Both of its channels run on one event loop, so this needs no lock.
final class ConnectionRecord {
    let started = NIODeadline.now()
    var logger: Logger
    var node: NodeID?
    var trafficClass: TrafficClass
    /// The first reason the connection ended; later ones are consequences.
    private(set) var outcome: String?
    var reason: String?
    /// Client bytes read by a classifier before the splice.
    var peekedBytes = 0
    /// Times the client was handed to another node after one closed without answering.
    var retries = 0
    /// When bytes last moved either way (the idle timeout counts from here).
    var lastActivity = NIODeadline.now()
    var clientGlue: GlueHandler?
    var nodeGlue: GlueHandler?
    /// Bytes the plain-TCP data path moved (it has no glue handlers to ask).
    var splicedBytesIn = 0
    var splicedBytesOut = 0

    let metrics: ListenerMetrics
    /// The client's address, described only when a line is written.
    let client: SocketAddress?
    /// How a classifying listener decided the class ("sni=...", "path=...").
    var classified: String?

    init(logger: Logger, client: SocketAddress?, trafficClass: TrafficClass, metrics: ListenerMetrics) {
        self.logger = logger
        self.client = client
        self.trafficClass = trafficClass
        self.metrics = metrics
        metrics.active.increment()
    }

    /// "10.1.2.3:51234" for log lines.
    var clientDescription: String {
        client.map(Balancer.describe) ?? "unknown"
    }

    /// A failure of one node was recovered by handing the client to another: it was not the end.
    func recovered() {
        outcome = nil
        reason = nil
    }

    func end(_ outcome: String, reason: String? = nil) {
        guard self.outcome == nil else { return }
        self.outcome = outcome
        if let reason { self.reason = reason }
    }

    /// Writes the one access-log line of this connection and counts it.
    func log() {
        let bytesIn = peekedBytes + (clientGlue?.bytesRead ?? 0) + splicedBytesIn
        let bytesOut = (nodeGlue?.bytesRead ?? 0) + splicedBytesOut
        metrics.active.decrement()
        metrics.connectionEnded(
            trafficClass: trafficClass, node: node, outcome: outcome ?? "closed", bytesIn: bytesIn, bytesOut: bytesOut)
        let level: Logger.Level =
            switch outcome {
            case "refused", "unavailable", "handshake-failed": .warning
            default: .info
            }
        // Building the line costs more than proxying a short connection: skip it when it is not printed.
        if logger.logLevel <= level {
            var metadata: Logger.Metadata = [
                "client": "\(clientDescription)",
                "class": "\(trafficClass)",
                "node": "\(node ?? "-")",
                "bytes_in": "\(bytesIn)",
                "bytes_out": "\(bytesOut)",
                "duration_ms": "\((NIODeadline.now() - started).nanoseconds / 1_000_000)",
                "outcome": "\(outcome ?? "closed")",
            ]
            if let reason { metadata["reason"] = "\(reason)" }
            if retries > 0 { metadata["retries"] = "\(retries)" }
            if let classified { metadata["classified"] = "\(classified)" }
            logger.log(level: level, "connection", metadata: metadata)
        }
        // The glue handlers (and the callbacks they hold) must not outlive the connection.
        clientGlue = nil
        nodeGlue = nil
    }
}

@available(*, unavailable)
extension ConnectionRecord: Sendable {}

/// Sits at the head of each side's pipeline: notes the first error, so the access log says why a
/// connection ended, and notes when bytes move; on the client side it has the loop's
/// `IdleSweeper` close the connection once no bytes moved either way for the idle timeout.
final class ConnectionGuard: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let record: ConnectionRecord
    private let side: String
    let idleTimeout: TimeAmount?
    private let sweeper: IdleSweeper?
    private var context: ChannelHandlerContext?
    private var watched = false

    init(record: ConnectionRecord, side: String, idleTimeout: TimeAmount? = nil, sweeper: IdleSweeper? = nil) {
        self.record = record
        self.side = side
        self.idleTimeout = idleTimeout
        self.sweeper = sweeper
    }

    /// Tells a connection the balancer is closing it for good.
    struct ShutdownEvent: Sendable {}

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { watch() }
    }

    func channelActive(context: ChannelHandlerContext) {
        watch()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        record.lastActivity = .now()
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        unwatch()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        unwatch()
        self.context = nil
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ShutdownEvent {
            record.end("shutdown")
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        record.end("error", reason: "\(side): \(error)")
        context.fireErrorCaught(error)
    }

    /// No bytes moved either way for the idle timeout.
    func isIdle(at now: NIODeadline) -> Bool {
        guard let idleTimeout else { return false }
        return now - record.lastActivity >= idleTimeout
    }

    func closeForIdleness() {
        record.end("idle-timeout")
        context?.close(promise: nil)
    }

    // `handlerAdded` on an active channel and `channelActive` may both come: watch once.
    private func watch() {
        guard !watched, let idleTimeout, let sweeper else { return }
        watched = true
        record.lastActivity = .now()
        sweeper.add(self, timeout: idleTimeout)
    }

    private func unwatch() {
        guard watched else { return }
        watched = false
        sweeper?.remove(self)
    }
}

@available(*, unavailable)
extension ConnectionGuard: Sendable {}
