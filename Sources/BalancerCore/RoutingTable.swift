/// Why a new connection found no node: every configured node with the reason it did not qualify.
public struct Refusal: Sendable, Hashable, CustomStringConvertible {
    public var trafficClass: TrafficClass
    public var reasons: [(node: NodeID, reason: IneligibilityReason)]

    public init(trafficClass: TrafficClass, reasons: [(node: NodeID, reason: IneligibilityReason)]) {
        self.trafficClass = trafficClass
        self.reasons = reasons
    }

    /// e.g. "console refused: ums1 update, ums2 installing, ums3 down".
    public var description: String {
        let detail =
            reasons.isEmpty ? "no nodes configured" : reasons.map { "\($0.node) \($0.reason)" }.joined(separator: ", ")
        return "\(trafficClass) refused: \(detail)"
    }

    public static func == (lhs: Refusal, rhs: Refusal) -> Bool {
        lhs.trafficClass == rhs.trafficClass
            && lhs.reasons.map(\.node) == rhs.reasons.map(\.node)
            && lhs.reasons.map(\.reason) == rhs.reasons.map(\.reason)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(trafficClass)
        for entry in reasons {
            hasher.combine(entry.node)
            hasher.combine(entry.reason)
        }
    }
}

/// The outcome of routing one new connection.
public enum RoutingDecision: Sendable, Hashable {
    /// Try these nodes in this order.
    case tryNodes([NodeID])
    /// Nobody can take it.
    case refuse(Refusal)
}

/// Everything routing needs to know, in one value: node states in configuration order and the
/// active connection count of each. The I/O layer keeps it behind a lock and asks it per connection.
public struct RoutingTable: Sendable {
    public private(set) var nodes: [NodeStatus]
    private var activeConnections: [NodeID: Int] = [:]
    private var rotation = 0
    private var slowStarts: [NodeID: (since: ContinuousClock.Instant, duration: Duration)] = [:]
    public var consolePolicy: ConsolePolicy
    /// An update run is in progress, reconnecting or stalled.
    public var updateRunning = false

    public init(nodes: [NodeStatus], consolePolicy: ConsolePolicy = .normalOnly) {
        self.nodes = nodes
        self.consolePolicy = consolePolicy
    }

    /// The state of `id`, if configured.
    public func status(of id: NodeID) -> NodeStatus? {
        nodes.first { $0.id == id }
    }

    /// Connections (and connect attempts) currently counted against `id`.
    public func connections(to id: NodeID) -> Int {
        activeConnections[id, default: 0]
    }

    /// Decides where a new connection goes.
    public mutating func route(
        _ trafficClass: TrafficClass,
        algorithm: BalanceAlgorithm,
        clientKey: String,
        now: ContinuousClock.Instant = .now
    ) -> RoutingDecision {
        var eligible: [NodeLoad] = []
        eligible.reserveCapacity(nodes.count)
        for node in nodes
        where Eligibility.isEligible(
            node, for: trafficClass, consolePolicy: consolePolicy, updateRunning: updateRunning)
        {
            eligible.append(
                NodeLoad(
                    id: node.id, activeConnections: connections(to: node.id), weight: weight(of: node.id, now: now)))
        }
        guard !eligible.isEmpty else {
            // Only a refusal needs the reasons, so the common path does not build them.
            let reasons = nodes.compactMap { node in
                Eligibility.reason(node, for: trafficClass, consolePolicy: consolePolicy, updateRunning: updateRunning)
                    .map { (node: node.id, reason: $0) }
            }
            return .refuse(Refusal(trafficClass: trafficClass, reasons: reasons))
        }
        rotation &+= 1
        return .tryNodes(NodeSelector.order(eligible, algorithm: algorithm, rotation: rotation, clientKey: clientKey))
    }

    /// Lets `id` take a growing share of new connections over `duration`, from 10% up, so a node
    /// coming back is not flooded by every client at once.
    public mutating func slowStart(_ id: NodeID, over duration: Duration, now: ContinuousClock.Instant = .now) {
        slowStarts[id] = duration > .zero ? (now, duration) : nil
    }

    /// The node's share of traffic at `now`: 1 unless it slow-starts.
    public mutating func weight(of id: NodeID, now: ContinuousClock.Instant) -> Double {
        guard let slowStart = slowStarts[id] else { return 1 }
        let elapsed = (now - slowStart.since) / slowStart.duration
        guard elapsed < 1 else {
            slowStarts[id] = nil
            return 1
        }
        return max(0.1, elapsed)
    }

    /// Counts a connection (or a connect attempt) against `id`.
    public mutating func connectionOpened(to id: NodeID) {
        activeConnections[id, default: 0] += 1
    }

    /// Releases what `connectionOpened(to:)` counted.
    public mutating func connectionClosed(from id: NodeID) {
        let remaining = activeConnections[id, default: 0] - 1
        activeConnections[id] = remaining > 0 ? remaining : nil
    }

    /// Applies a change of one node's state; returns the previous state when anything changed.
    @discardableResult
    public mutating func update(_ id: NodeID, _ change: (inout NodeStatus) -> Void) -> NodeStatus? {
        guard let index = nodes.firstIndex(where: { $0.id == id }) else { return nil }
        let before = nodes[index]
        change(&nodes[index])
        return nodes[index] == before ? nil : before
    }

    /// Replaces the node list after a reload: nodes that stay keep their state, new ones start
    /// as given, removed ones stop taking connections (their counts drain as connections close).
    public mutating func replaceNodes(with fresh: [NodeStatus], replacing reset: Set<NodeID> = []) {
        nodes = fresh.map { candidate in
            reset.contains(candidate.id) ? candidate : status(of: candidate.id) ?? candidate
        }
    }
}
