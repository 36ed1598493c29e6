import Foundation

/// The one source of time for the balancer's control plane (probes, update runs, reconnect
/// deadlines, drains, slow start): injected, so tests advance a manual clock instead of sleeping.
///
/// Instants are wall-clock `Date`s because update runs and their deadlines are persisted and must
/// mean the same after a restart. The data path keeps its own monotonic per-connection timers.
public protocol BalancerClock: Sendable {
    /// The current time.
    func now() -> Date
    /// Suspends until `deadline` (at once if it has passed); throws `CancellationError` when cancelled.
    func sleep(until deadline: Date) async throws
}

extension BalancerClock {
    /// Suspends for `duration`.
    public func sleep(for duration: Duration) async throws {
        try await sleep(until: now().addingTimeInterval(duration.seconds))
    }
}

/// The system's wall clock.
public struct SystemClock: BalancerClock {
    public init() {}

    public func now() -> Date { Date() }

    public func sleep(until deadline: Date) async throws {
        let wait = deadline.timeIntervalSinceNow
        if wait > 0 {
            try await Task.sleep(for: .nanoseconds(Int64(wait * 1e9)))
        } else {
            try Task.checkCancellation()
        }
    }
}
