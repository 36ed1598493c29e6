/// Passive health (outlier detection), `health.passive`: what real connections show of a node,
/// apart from what its status probe claims. A node whose service port refuses connections, or
/// accepts and closes them without answering, is taken out of rotation for a growing interval.
public struct PassiveHealthSettings: Sendable, Hashable {
    /// Consecutive failed connections that take a node out of rotation; 0 turns passive health off.
    public var failures = 3
    /// How long the first ejection lasts; each further one in a row lasts twice as long.
    public var ejection: Duration = .seconds(10)
    /// The longest an ejection lasts.
    public var maxEjection: Duration = .seconds(300)

    public init() {}

    /// Passive health is on.
    public var isEnabled: Bool { failures > 0 }
}

/// What the data path has seen of one node lately.
public struct OutlierState: Sendable, Hashable {
    /// Failed connections since the last one the node answered.
    public private(set) var consecutiveFailures = 0
    /// Ejections in a row (the node failed again soon after coming back), for the growing interval.
    public private(set) var ejections = 0
    /// Out of rotation until then.
    public private(set) var ejectedUntil: ContinuousClock.Instant?

    public init() {}

    /// The node has failures worth clearing when it answers.
    public var hasRecord: Bool { consecutiveFailures > 0 || ejections > 0 || ejectedUntil != nil }

    /// Out of rotation at `now`.
    public func isEjected(at now: ContinuousClock.Instant) -> Bool {
        ejectedUntil.map { now < $0 } ?? false
    }

    /// A connection to the node failed; returns how long it is out of rotation when this failure
    /// ejects it.
    public mutating func failed(at now: ContinuousClock.Instant, settings: PassiveHealthSettings) -> Duration? {
        guard settings.isEnabled, !isEjected(at: now) else { return nil }
        consecutiveFailures += 1
        guard consecutiveFailures >= settings.failures else { return nil }
        let factor = 1 << min(ejections, 20)
        let length = min(settings.ejection * factor, settings.maxEjection)
        ejections += 1
        consecutiveFailures = 0
        ejectedUntil = now + length
        return length
    }

    /// The node answered a connection: its failures are forgiven.
    public mutating func answered() {
        consecutiveFailures = 0
        if ejectedUntil == nil { ejections = 0 }
    }

    /// Ends an ejection that is over at `now`; true when it did (the node comes back via slow start).
    public mutating func expire(at now: ContinuousClock.Instant) -> Bool {
        guard let until = ejectedUntil, now >= until else { return false }
        ejectedUntil = nil
        return true
    }
}

/// A change passive health made to a node, for the journal, log and metrics.
public enum PassiveHealthEvent: Sendable, Hashable {
    /// Out of rotation for `duration` after `failures` consecutive failed connections, the last for `reason`.
    case ejected(NodeID, duration: Duration, failures: Int, reason: String)
    /// Back in rotation, through slow start.
    case returned(NodeID)
}
