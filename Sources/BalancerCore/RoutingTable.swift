/// Why a new connection found no node: every configured node with the reason it did not qualify.
public struct Refusal: Sendable, Hashable, CustomStringConvertible {
    public var trafficClass: TrafficClass
    public var reasons: [(node: NodeID, reason: IneligibilityReason)]
    /// The update run under way when the connection was refused, if one was.
    public var update: UpdateProgress?

    public init(
        trafficClass: TrafficClass, reasons: [(node: NodeID, reason: IneligibilityReason)],
        update: UpdateProgress? = nil
    ) {
        self.trafficClass = trafficClass
        self.reasons = reasons
        self.update = update
    }

    /// e.g. "console refused: ums1 update, ums2 installing, ums3 down".
    public var description: String {
        let detail =
            reasons.isEmpty ? "no nodes configured" : reasons.map { "\($0.node) \($0.reason)" }.joined(separator: ", ")
        return "\(trafficClass) refused: \(detail)"
    }

    public static func == (lhs: Refusal, rhs: Refusal) -> Bool {
        lhs.trafficClass == rhs.trafficClass && lhs.update == rhs.update
            && lhs.reasons.map(\.node) == rhs.reasons.map(\.node)
            && lhs.reasons.map(\.reason) == rhs.reasons.map(\.reason)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(trafficClass)
        hasher.combine(update)
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
    /// Eligible nodes exist, but every one is at its `max_connections`: wait for a slot.
    case queue
}

/// Everything routing needs to know, in one value: node states in configuration order and the
/// active connection count of each. The I/O layer keeps it behind a lock and asks it per connection.
/// Node state changes only through `apply(_:to:)`, whoever its writer (probes, operator, update run).
public struct RoutingTable: Sendable {
    /// Each node's state by source, in configuration order.
    public private(set) var records: [NodeRecord]
    /// Each node as routing sees it (`records`' statuses, kept for the per-connection path).
    public private(set) var nodes: [NodeStatus]
    private var activeConnections: [NodeID: Int] = [:]
    private var rotation = 0
    private var slowStarts: [NodeID: (since: ContinuousClock.Instant, duration: Duration)] = [:]
    public var consolePolicy: ConsolePolicy
    /// The update run in progress, reconnecting or stalled; nil when none is.
    public var update: UpdateProgress?
    /// An update run is under way (what the `freeze` console policy looks at).
    public var updateRunning: Bool { update != nil }
    /// Passive health: what real connections show.
    public var passive = PassiveHealthSettings()
    /// How long a node that comes back from an ejection takes to get its full share.
    public var returnSlowStart: Duration = .seconds(30)
    /// `max_connections` per node, where set.
    public var connectionLimits: [NodeID: Int] = [:]
    private var outliers: [NodeID: OutlierState] = [:]
    /// Nodes out of rotation now: while none is, routing skips looking for ejections that ended.
    private var ejectedNodes = 0
    /// Passive-health changes routing made (an ejection ended), for the I/O layer to report.
    public private(set) var pendingEvents: [PassiveHealthEvent] = []

    public init(records: [NodeRecord], consolePolicy: ConsolePolicy = .normalOnly) {
        self.records = records
        self.nodes = records.map(\.status)
        self.consolePolicy = consolePolicy
    }

    /// A table of nodes in the given states (none drained or overridden by anyone).
    public init(nodes: [NodeStatus], consolePolicy: ConsolePolicy = .normalOnly) {
        self.init(records: nodes.map(NodeRecord.init), consolePolicy: consolePolicy)
    }

    /// The state of `id`, if configured.
    public func status(of id: NodeID) -> NodeStatus? {
        nodes.first { $0.id == id }
    }

    /// `id`'s state by source, if configured.
    public func record(of id: NodeID) -> NodeRecord? {
        records.first { $0.id == id }
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
        now: @autoclosure () -> ContinuousClock.Instant = .now
    ) -> RoutingDecision {
        // The clock is read only when an ejection or a slow start needs it: most routes need neither.
        let now = ejectedNodes > 0 || !slowStarts.isEmpty ? now() : nil
        if ejectedNodes > 0, let now { expireEjections(now: now) }
        var eligible: [NodeLoad] = []
        var ejected: [NodeLoad] = []
        var full = false
        eligible.reserveCapacity(nodes.count)
        for node in nodes
        where Eligibility.isEligible(
            node, for: trafficClass, consolePolicy: consolePolicy, updateRunning: updateRunning)
        {
            let active = connections(to: node.id)
            if let limit = connectionLimits[node.id], active >= limit {
                full = true
                continue
            }
            let share = now.map { weight(of: node.id, now: $0) } ?? 1
            let load = NodeLoad(id: node.id, activeConnections: active, weight: share)
            if ejectedNodes > 0, let now, outliers[node.id]?.isEjected(at: now) == true {
                ejected.append(load)
            } else {
                eligible.append(load)
            }
        }
        if eligible.isEmpty, ejected.isEmpty, full { return .queue }
        guard !eligible.isEmpty || !ejected.isEmpty else {
            // Only a refusal needs the reasons, so the common path does not build them.
            let reasons = nodes.compactMap { node in
                Eligibility.reason(node, for: trafficClass, consolePolicy: consolePolicy, updateRunning: updateRunning)
                    .map { (node: node.id, reason: $0) }
            }
            return .refuse(Refusal(trafficClass: trafficClass, reasons: reasons, update: update))
        }
        rotation &+= 1
        // Passive health never refuses what an ejected node might still serve: ejected nodes are
        // tried last, after every node in rotation failed.
        var order = NodeSelector.order(eligible, algorithm: algorithm, rotation: rotation, clientKey: clientKey)
        if !ejected.isEmpty {
            order += NodeSelector.order(ejected, algorithm: algorithm, rotation: rotation, clientKey: clientKey)
        }
        return .tryNodes(order)
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

    // MARK: - Passive health

    /// A connection to `id` failed (`reason` says how); returns the ejection it causes, if any.
    public mutating func nodeFailed(
        _ id: NodeID, reason: String, now: ContinuousClock.Instant = .now
    ) -> PassiveHealthEvent? {
        guard passive.isEnabled, status(of: id) != nil else { return nil }
        if outliers[id]?.expire(at: now) == true {
            ejectedNodes -= 1
            slowStart(id, over: returnSlowStart, now: now)
            pendingEvents.append(.returned(id))
        }
        let failures = outliers[id, default: OutlierState()].consecutiveFailures + 1
        guard let length = outliers[id, default: OutlierState()].failed(at: now, settings: passive) else {
            return nil
        }
        ejectedNodes += 1
        return .ejected(id, duration: length, failures: failures, reason: reason)
    }

    /// `id` answered a connection: its failures are forgiven.
    public mutating func nodeAnswered(_ id: NodeID) {
        outliers[id]?.answered()
        if outliers[id]?.hasRecord == false { outliers[id] = nil }
    }

    /// `id` has failures on record, so its next answer is worth reporting.
    public func hasFailureRecord(_ id: NodeID) -> Bool {
        outliers[id]?.hasRecord ?? false
    }

    /// `id` is out of rotation at `now`.
    public func isEjected(_ id: NodeID, now: ContinuousClock.Instant = .now) -> Bool {
        outliers[id]?.isEjected(at: now) ?? false
    }

    /// Takes the passive-health changes routing made since the last call.
    public mutating func takePendingEvents() -> [PassiveHealthEvent] {
        defer { pendingEvents = [] }
        return pendingEvents
    }

    /// Brings back the nodes whose ejection is over, through slow start.
    public mutating func expireEjections(now: ContinuousClock.Instant = .now) {
        for id in outliers.keys where outliers[id]?.expire(at: now) == true {
            ejectedNodes -= 1
            slowStart(id, over: returnSlowStart, now: now)
            pendingEvents.append(.returned(id))
        }
    }

    /// Counts a connection (or a connect attempt) against `id`.
    public mutating func connectionOpened(to id: NodeID) {
        activeConnections[id, default: 0] += 1
    }

    /// Releases what `connectionOpened(to:)` counted; true when that was `id`'s last connection.
    @discardableResult
    public mutating func connectionClosed(from id: NodeID) -> Bool {
        let remaining = activeConnections[id, default: 0] - 1
        activeConnections[id] = remaining > 0 ? remaining : nil
        return remaining <= 0
    }

    /// Applies `event` to `id`'s state; returns the state before it when the state changed.
    @discardableResult
    public mutating func apply(_ event: NodeEvent, to id: NodeID) -> NodeStatus? {
        guard let index = records.firstIndex(where: { $0.id == id }) else { return nil }
        guard let before = records[index].apply(event) else { return nil }
        nodes[index] = records[index].status
        if before.mode != nodes[index].mode, Self.restarted(from: before.mode, to: nodes[index].mode) {
            forgive(id)
        }
        return before
    }

    /// A node whose report goes from not serving (installing, reconnecting, unknown) to serving
    /// has restarted: what its service port did before says nothing about it now.
    private static func restarted(from before: NodeMode, to after: NodeMode) -> Bool {
        let serving: Set<NodeMode> = [.normal, .update]
        return !serving.contains(before) && serving.contains(after)
    }

    /// Clears `id`'s failure record; an ejection ends at once, through slow start.
    private mutating func forgive(_ id: NodeID) {
        guard let record = outliers.removeValue(forKey: id), record.ejectedUntil != nil else { return }
        ejectedNodes -= 1
        slowStart(id, over: returnSlowStart)
        pendingEvents.append(.returned(id))
    }

    /// Replaces the node list after a reload: nodes that stay keep their state, new ones start
    /// as `fresh` has them, and those in `readdressed` (another address) lose what the probes knew
    /// of the old one but keep the operator's and the update run's decisions.
    public mutating func replaceNodes(with fresh: [NodeRecord], readdressed: Set<NodeID> = []) {
        records = fresh.map { candidate in
            guard var kept = record(of: candidate.id) else { return candidate }
            if readdressed.contains(candidate.id) { kept.apply(.readdressed(candidate.observation)) }
            return kept
        }
        nodes = records.map(\.status)
        // A removed or readdressed node's failure record goes with it.
        let kept = Set(records.map(\.id)).subtracting(readdressed)
        for id in outliers.keys where !kept.contains(id) {
            if outliers[id]?.ejectedUntil != nil { ejectedNodes -= 1 }
            outliers[id] = nil
        }
    }
}
