import BalancerCore
import Metrics
import NIOConcurrencyHelpers

/// The metrics of one listener's connections, created once and reused: a connection only
/// increments handles it already has, so the hot path does no registry lookups.
public final class ListenerMetrics: Sendable {
    public let listener: String
    public let active: Meter
    let bytesIn: Counter
    let bytesOut: Counter
    private let connections = NIOLockedValueBox<[ConnectionKey: Counter]>([:])
    private let refusals = NIOLockedValueBox<[RefusalKey: Counter]>([:])
    private let handshakeFailures = NIOLockedValueBox<[String: Counter]>([:])
    private let requests = NIOLockedValueBox<[RequestKey: Counter]>([:])
    private let httpLimits = NIOLockedValueBox<[String: Counter]>([:])

    struct RequestKey: Hashable {
        var trafficClass: TrafficClass
        var node: NodeID?
        var status: Int
        var outcome: RequestOutcome
    }

    /// The counter a connection's last request went to: its next one usually goes to the same
    /// (same class, node, status and outcome), found without the lock and the table.
    public struct RequestCounterCache {
        var key: RequestKey?
        var counter: Counter?

        public init() {}
    }

    private struct ConnectionKey: Hashable {
        var trafficClass: TrafficClass
        var node: NodeID?
        var outcome: ConnectionOutcome
    }

    private struct RefusalKey: Hashable {
        var trafficClass: TrafficClass
        var reason: String
    }

    public init(listener: String) {
        self.listener = listener
        active = Meter(label: "ums_balancer_connections_active", dimensions: [("listener", listener)])
        bytesIn = Counter(label: "ums_balancer_bytes_total", dimensions: [("listener", listener), ("direction", "in")])
        bytesOut = Counter(
            label: "ums_balancer_bytes_total", dimensions: [("listener", listener), ("direction", "out")])
    }

    /// Counts a finished connection by class, node and outcome.
    func connectionEnded(
        trafficClass: TrafficClass, node: NodeID?, outcome: ConnectionOutcome, bytesIn: Int, bytesOut: Int
    ) {
        let key = ConnectionKey(trafficClass: trafficClass, node: node, outcome: outcome)
        let counter = connections.withLockedValue { counters in
            if let counter = counters[key] { return counter }
            let counter = Counter(
                label: "ums_balancer_connections_total",
                dimensions: [
                    ("listener", listener), ("class", trafficClass.rawValue), ("node", node ?? "-"),
                    ("outcome", outcome.rawValue),
                ])
            counters[key] = counter
            return counter
        }
        counter.increment()
        if bytesIn > 0 { self.bytesIn.increment(by: bytesIn) }
        if bytesOut > 0 { self.bytesOut.increment(by: bytesOut) }
    }

    /// Counts a connection no node took, by class and reason (`no-eligible-node`, `all-connects-failed`).
    func refused(trafficClass: TrafficClass, reason: String) {
        let key = RefusalKey(trafficClass: trafficClass, reason: reason)
        let counter = refusals.withLockedValue { counters in
            if let counter = counters[key] { return counter }
            let counter = Counter(
                label: "ums_balancer_refusals_total",
                dimensions: [("listener", listener), ("class", trafficClass.rawValue), ("reason", reason)])
            counters[key] = counter
            return counter
        }
        counter.increment()
    }

    /// Counts a finished request of a `by-path` listener by class, node, status and outcome.
    func requestEnded(
        trafficClass: TrafficClass, node: NodeID?, status: Int, outcome: RequestOutcome,
        cache: inout RequestCounterCache
    ) {
        let key = RequestKey(trafficClass: trafficClass, node: node, status: status, outcome: outcome)
        if key == cache.key, let counter = cache.counter {
            counter.increment()
            return
        }
        let counter = requests.withLockedValue { counters in
            if let counter = counters[key] { return counter }
            let counter = Counter(
                label: "ums_balancer_requests_total",
                dimensions: [
                    ("listener", listener), ("class", trafficClass.rawValue), ("node", node ?? "-"),
                    ("status", status == 0 ? "-" : String(status)), ("outcome", outcome.rawValue),
                ])
            counters[key] = counter
            return counter
        }
        cache.key = key
        cache.counter = counter
        counter.increment()
    }

    /// Counts a client that ran into an HTTP limit of a `by-path` listener, by limit.
    public func httpLimitHit(_ limit: HTTPLimit) {
        let label = limit.label
        let counter = httpLimits.withLockedValue { counters in
            if let counter = counters[label] { return counter }
            let counter = Counter(
                label: "ums_balancer_http_limits_total", dimensions: [("listener", listener), ("limit", label)])
            counters[label] = counter
            return counter
        }
        counter.increment()
    }

    /// Counts a connection that did not complete what its listener classifies by, by reason.
    public func handshakeFailed(reason: String) {
        let counter = handshakeFailures.withLockedValue { counters in
            if let counter = counters[reason] { return counter }
            let counter = Counter(
                label: "ums_balancer_handshake_failures_total",
                dimensions: [("listener", listener), ("reason", reason)])
            counters[reason] = counter
            return counter
        }
        counter.increment()
    }
}
