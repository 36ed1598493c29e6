import BalancerCore
import Logging
import NIOCore

/// The access-log line and metrics of one request on a `by-path` listener, written once when it
/// ends. Each request of a keep-alive connection gets one; the connection gets its own `connection`
/// line when it closes.
public struct RequestLog {
    /// When the request head arrived.
    public let started = NIODeadline.now()
    public var method: String
    public var path: String
    public var trafficClass: TrafficClass
    /// The status the client got (0: none).
    public var status = 0
    /// Body bytes from the client and to the client.
    public var bytesIn = 0
    public var bytesOut = 0
    /// The stream of an HTTP/2 request.
    public var stream: Int?

    public init(method: String, path: String, trafficClass: TrafficClass) {
        self.method = method
        self.path = path
        self.trafficClass = trafficClass
    }

    /// Writes the line and counts the request; `client` as the connection's line names it.
    public func ended(
        _ exchange: HTTPExchangeMachine<NodeTarget>, client: @autoclosure () -> String, clientCertificate: Bool?,
        listener: ListenerContext, counter: inout ListenerMetrics.RequestCounterCache
    ) {
        let outcome = exchange.outcome ?? .clientAborted
        let node = exchange.node
        listener.metrics.requestEnded(
            trafficClass: trafficClass, node: node, status: status, outcome: outcome, cache: &counter)
        switch exchange.reason {
        // A give-up is counted only when the request ended on it.
        case .everyNodeFailed? where exchange.outcome != .unavailable: break
        case let reason?: listener.recordRefusal(reason, trafficClass: trafficClass)
        case nil: break
        }
        let level: Logger.Level = outcome.isWarning ? .warning : .info
        let logger = listener.accessLogger
        guard logger.logLevel <= level else { return }
        var line: Logger.Metadata = [
            "client": "\(client())",
            "class": "\(trafficClass)",
            "node": "\(node ?? "-")",
            "method": "\(method)",
            "path": "\(path)",
            "status": "\(status == 0 ? "-" : String(status))",
            "bytes_in": "\(bytesIn)",
            "bytes_out": "\(bytesOut)",
            "duration_ms": "\((NIODeadline.now() - started).nanoseconds / 1_000_000)",
            "outcome": "\(outcome)",
        ]
        if let reason = exchange.reason { line["reason"] = "\(reason)" }
        if exchange.retries > 0 { line["retries"] = "\(exchange.retries)" }
        if let stream { line["stream"] = "\(stream)" }
        if let clientCertificate { line["client_cert"] = clientCertificate ? "present" : "none" }
        logger.log(level: level, "request", metadata: line)
    }
}
