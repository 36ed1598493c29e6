import BalancerCore
import Foundation
import NIOConcurrencyHelpers

/// A clock that moves only when a test says so: `advance(by:)` wakes every sleeper whose deadline
/// it passes, so timing tests run in no time and the same way on a loaded machine.
public final class ManualClock: BalancerClock {
    private struct State {
        var now: Date
        var sleepers: [UInt64: (deadline: Date, continuation: CheckedContinuation<Void, any Error>)] = [:]
        var nextID: UInt64 = 0
    }

    private let state: NIOLockedValueBox<State>

    /// A clock standing at `start`.
    public init(start: Date = Date(timeIntervalSince1970: 1_800_000_000)) {
        state = NIOLockedValueBox(State(now: start))
    }

    public func now() -> Date {
        state.withLockedValue { $0.now }
    }

    /// Tasks currently suspended in `sleep(until:)`.
    public var sleeperCount: Int {
        state.withLockedValue { $0.sleepers.count }
    }

    public func sleep(until deadline: Date) async throws {
        let id = state.withLockedValue { state -> UInt64 in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let wakeNow = state.withLockedValue { state -> Bool in
                    if Task.isCancelled || deadline <= state.now { return true }
                    state.sleepers[id] = (deadline, continuation)
                    return false
                }
                if wakeNow {
                    if Task.isCancelled {
                        continuation.resume(throwing: CancellationError())
                    } else {
                        continuation.resume()
                    }
                }
            }
        } onCancel: {
            let sleeper = state.withLockedValue { $0.sleepers.removeValue(forKey: id) }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves the clock forward by `duration` and wakes the sleepers that are due.
    public func advance(by duration: Duration) {
        let due = state.withLockedValue { state in
            state.now = state.now.addingTimeInterval(duration.seconds)
            let due = state.sleepers.filter { $0.value.deadline <= state.now }
            for id in due.keys { state.sleepers.removeValue(forKey: id) }
            return due.values.sorted { $0.deadline < $1.deadline }.map(\.continuation)
        }
        for continuation in due { continuation.resume() }
    }

    /// Waits (in real time, bounded) until `count` tasks sleep on this clock: a test advances the
    /// clock only once the code under test is waiting on it.
    public func waitForSleepers(_ count: Int = 1, timeout: Duration = .seconds(10)) async throws {
        let deadline = ContinuousClock.now + timeout
        while sleeperCount < count {
            guard ContinuousClock.now < deadline else {
                throw TestKitError("expected \(count) sleepers on the manual clock, found \(sleeperCount)")
            }
            try await Task.sleep(for: .milliseconds(2))
        }
    }
}
