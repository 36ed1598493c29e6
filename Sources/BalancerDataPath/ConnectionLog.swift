import BalancerCore
import Logging
import NIOCore

/// The access-log line, metrics and journal entries of one proxied connection, written once when
/// it ends from what its connection machine decided. Both executors end every connection here,
/// so the log, metrics and journal read the same whichever data path carried it.
public struct ConnectionLog {
    /// When the connection was accepted.
    public let started: NIODeadline
    /// The client's address, described only when a line is written.
    public let client: SocketAddress?
    /// Extra fields for the line (a by-path listener's `client_cert`, say).
    public var metadata: Logger.Metadata = [:]

    /// Starts the record of a connection just accepted from `client` (counted as active);
    /// `started`: when, if the caller has read the clock already (the relay, once per poll).
    public init(client: SocketAddress?, listener: ListenerContext, started: NIODeadline = .now()) {
        self.started = started
        self.client = client
        listener.metrics.active.increment()
    }

    /// "10.1.2.3:51234" for log lines.
    public var clientDescription: String {
        client.map(Self.describe) ?? "unknown"
    }

    /// The client's IP address as text (what console affinity keys on).
    public var clientIP: String? { client?.ipAddress }

    /// The machine is about to dial again after a node failed: says so (a hand-on at notice level).
    public func dialling(after machine: ConnectionMachine<NodeTarget>, listener: ListenerContext) {
        guard let failure = machine.failures.last else { return }
        if failure.kind == .closedWithoutAnswer {
            listener.accessLogger.notice(
                "node closed a connection without answering: handing the client to the next node",
                metadata: ["client": "\(clientDescription)", "failed_node": "\(failure.node)"])
        } else {
            listener.accessLogger.debug(
                "connect failed, trying next node",
                metadata: ["client": "\(clientDescription)", "node": "\(failure.node)", "error": "\(failure.kind)"])
        }
    }

    /// Writes the line and counts the connection; `extraBytesOut` are bytes the balancer itself
    /// sent the client (a 503 answer).
    public func ended(_ machine: ConnectionMachine<NodeTarget>, listener: ListenerContext, extraBytesOut: Int = 0) {
        ended(
            machine.end ?? .closed, trafficClass: machine.trafficClass, node: machine.node,
            bytesIn: machine.bytesFromClient, bytesOut: machine.bytesFromNode + extraBytesOut,
            retries: machine.retries, classified: machine.classified, proxiedClient: machine.proxiedClient,
            listener: listener)
    }

    /// Writes the line and counts a connection that ended as `end`: `trafficClass` and `node`
    /// are what it was classified as and relayed to (a `by-path` connection: its first request's
    /// class and its last node), the bytes those read from and written to the client.
    public func ended(
        _ end: ConnectionEnd, trafficClass: TrafficClass, node: NodeID?, bytesIn: Int, bytesOut: Int,
        retries: Int = 0, classified: String? = nil, proxiedClient: ProxyHeader.Address? = nil,
        listener: ListenerContext
    ) {
        let metrics = listener.metrics
        metrics.active.decrement()
        metrics.connectionEnded(
            trafficClass: trafficClass, node: node, outcome: end.outcome, bytesIn: bytesIn, bytesOut: bytesOut)
        // What a driven update's canary gate counts: the node answered a device, and neither side failed.
        if trafficClass == .device, end.outcome == .closed, bytesOut > 0, let node {
            listener.directory.deviceConnectionServed(by: node)
        }
        switch end.reason {
        case .handshake(let failure)?: metrics.handshakeFailed(reason: failure.label)
        case let reason?: listener.recordRefusal(reason, trafficClass: trafficClass)
        case nil: break
        }
        let level: Logger.Level = end.outcome.isWarning ? .warning : .info
        let logger = listener.accessLogger
        // Building the line costs more than proxying a short connection: skip it when it is not printed.
        guard logger.logLevel <= level else { return }
        var line: Logger.Metadata = [
            "client": "\(proxiedClient?.description ?? clientDescription)",
            "class": "\(trafficClass)",
            "node": "\(node ?? "-")",
            "bytes_in": "\(bytesIn)",
            "bytes_out": "\(bytesOut)",
            "duration_ms": "\((NIODeadline.now() - started).nanoseconds / 1_000_000)",
            "outcome": "\(end.outcome)",
        ]
        if let reason = end.reason { line["reason"] = "\(reason)" }
        if retries > 0 { line["retries"] = "\(retries)" }
        if let classified { line["classified"] = "\(classified)" }
        // The front balancer that named the client in its PROXY header.
        if proxiedClient != nil { line["via"] = "\(clientDescription)" }
        line.merge(metadata) { $1 }
        logger.log(level: level, "connection", metadata: line)
    }

    /// "10.1.2.3:51234", "[::1]:8443".
    public static func describe(_ address: SocketAddress) -> String {
        guard let ip = address.ipAddress, let port = address.port else { return "\(address)" }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }
}

extension ListenerContext {
    /// Journals a refusal or a give-up (no eligible node, every node failed) and counts it in
    /// `ums_balancer_refusals_total` by its label; other reasons are neither.
    public func recordRefusal(_ reason: ConnectionEndReason, trafficClass: TrafficClass) {
        switch reason {
        case .noEligibleNode(let refusal):
            journal.record(.refusal, "\(configuration.name): \(refusal)")
        case .everyNodeFailed(let failedClass, let failures):
            let reasons = failures.map(\.description).joined(separator: ", ")
            journal.record(.refusal, "\(configuration.name): \(failedClass) unavailable: \(reasons)")
        default:
            break
        }
        if let label = reason.refusalLabel { metrics.refused(trafficClass: trafficClass, reason: label) }
    }
}

extension NIODeadline {
    /// This deadline on the connection machine's clock.
    public var monotonic: MonotonicInstant { MonotonicInstant(nanoseconds: uptimeNanoseconds) }
}

extension SocketAddress {
    /// The IP address as 4 or 16 bytes (nil for a Unix socket).
    public var ipBytes: [UInt8]? {
        switch self {
        case .v4(let address):
            var raw = address.address.sin_addr
            return withUnsafeBytes(of: &raw) { Array($0) }
        case .v6(let address):
            var raw = address.address.sin6_addr
            return withUnsafeBytes(of: &raw) { Array($0) }
        case .unixDomainSocket:
            return nil
        }
    }

    /// The address as a PROXY header carries it.
    public var proxyAddress: ProxyHeader.Address? {
        guard let ip = ipBytes, let port else { return nil }
        return ProxyHeader.Address(ip: ip, port: port)
    }
}

extension ConnectionSettings {
    /// The PROXY header a node connection begins with under `send_proxy`: the client (as a front
    /// balancer named it, else the peer) and the address it connected to.
    public func proxyHeader(
        for machine: ConnectionMachine<NodeTarget>, peer: SocketAddress?, local: @autoclosure () -> SocketAddress?
    ) -> [UInt8]? {
        guard let version = sendProxy else { return nil }
        let header = ProxyHeader(
            source: machine.proxiedClient ?? peer?.proxyAddress,
            destination: machine.proxiedDestination ?? local()?.proxyAddress)
        return header.encoded(version: version)
    }
}
