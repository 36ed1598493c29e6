import Foundation

/// `/status` `state`: whether the state database takes writes, and since when it has not.
public struct StoreCondition: Sendable, Hashable {
    /// The last write succeeded (or none failed yet).
    public var ok: Bool
    /// Why the last write failed, while failing.
    public var error: String?
    /// When the writes started failing, while failing.
    public var since: Date?
    /// Writes that failed since the balancer started.
    public var failedWrites: Int

    public init(ok: Bool = true, error: String? = nil, since: Date? = nil, failedWrites: Int = 0) {
        self.ok = ok
        self.error = error
        self.since = since
        self.failedWrites = failedWrites
    }
}

/// The store's failures and what to say about them: the first failure at once, then one line per
/// `reminder` while it lasts (not one per write), and the recovery once.
struct StoreHealth: Sendable {
    static let reminder: TimeInterval = 60

    private(set) var condition = StoreCondition()
    private var failuresSinceReport = 0
    private var lastReport: Date?

    /// A write failed at `now`; returns the line to log, when one is due.
    mutating func failed(_ error: String, at now: Date) -> String? {
        condition.failedWrites += 1
        failuresSinceReport += 1
        guard condition.ok else {
            condition.error = error
            guard let last = lastReport, now.timeIntervalSince(last) >= Self.reminder else { return nil }
            let since = condition.since.map { Int(now.timeIntervalSince($0)) } ?? 0
            defer { (lastReport, failuresSinceReport) = (now, 0) }
            return "state database still cannot be written (for \(since)s, \(failuresSinceReport) more failed writes)"
        }
        condition = StoreCondition(ok: false, error: error, since: now, failedWrites: condition.failedWrites)
        (lastReport, failuresSinceReport) = (now, 0)
        return "state database cannot be written"
    }

    /// A write succeeded at `now`; returns the line to log when the store just recovered.
    mutating func succeeded(at now: Date) -> String? {
        guard !condition.ok else { return nil }
        let since = condition.since.map { Int(now.timeIntervalSince($0)) } ?? 0
        condition = StoreCondition(failedWrites: condition.failedWrites)
        (lastReport, failuresSinceReport) = (nil, 0)
        return "state database takes writes again after \(since)s"
    }
}
