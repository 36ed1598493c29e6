import Foundation

/// How many of a node's remaining connections may be closed now, at `perSecond` on average
/// (`update.drain_rate`): devices then reconnect to the serving nodes in a steady stream instead
/// of one burst. The first one goes at once; a late tick never closes more than a second's worth.
public struct DrainPacer: Sendable, Hashable {
    public let perSecond: Int
    private var last: Date
    private var credit: Double

    public init(perSecond: Int, start: Date) {
        self.perSecond = max(1, perSecond)
        self.last = start
        self.credit = 1
    }

    /// Connections to close at `now`.
    public mutating func allowance(at now: Date) -> Int {
        let elapsed = max(0, now.timeIntervalSince(last))
        last = now
        credit = min(credit + elapsed * Double(perSecond), max(1, Double(perSecond)))
        let allowed = Int(credit.rounded(.down))
        credit -= Double(allowed)
        return allowed
    }
}
