import Logging
import Metrics
import NIOConcurrencyHelpers
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The file descriptors proxied connections may hold: the open-file limit minus a reserve for
/// everything else the process opens (event loops, probes, the admin API, the state database).
///
/// A listener accepts only when the budget has room for both sockets of a connection; otherwise
/// it stops accepting and new clients wait in the kernel's listen backlog, instead of being
/// accepted and reset when the node socket cannot be opened. Any connection that closes gives
/// its descriptors back and wakes the listeners that wait.
public final class DescriptorBudget: Sendable {
    /// Descriptors one proxied connection holds: the client's socket and the node's.
    public static let perConnection = 2

    /// How many descriptors connections may hold in all.
    public let capacity: Int
    private let inUse = Atomic<Int>(0)
    private let waiting = Atomic<Int>(0)
    private let wakers = NIOLockedValueBox<[@Sendable () -> Void]>([])
    private let logger: Logger?
    private let exhausted = Atomic<Bool>(false)

    public init(capacity: Int, logger: Logger? = nil) {
        self.capacity = max(capacity, Self.perConnection)
        self.logger = logger
    }

    /// The budget the process's soft open-file limit allows.
    public static func fromOpenFileLimit(logger: Logger? = nil) -> DescriptorBudget {
        DescriptorBudget(capacity: capacity(forLimit: openFileLimit()), logger: logger)
    }

    /// What connections may hold under `limit` open files: a reserve of 64 plus 1/64 of the limit
    /// (at most 4096) stays free for everything else.
    public static func capacity(forLimit limit: Int) -> Int {
        limit - min(64 + limit / 64, 4096)
    }

    /// The soft RLIMIT_NOFILE.
    public static func openFileLimit() -> Int {
        var limit = rlimit()
        #if canImport(Glibc)
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
        let resource = RLIMIT_NOFILE
        #endif
        guard getrlimit(resource, &limit) == 0 else { return 1024 }
        return Int(min(UInt64(limit.rlim_cur), UInt64(Int32.max)))
    }

    /// Descriptors connections hold now.
    public var used: Int { inUse.load(ordering: .relaxed) }

    /// Takes the descriptors of one connection; false when the budget is spent (then the caller
    /// stops accepting and waits for `onFreed`).
    public func take(listener: String) -> Bool {
        var current = inUse.load(ordering: .relaxed)
        while true {
            guard current + Self.perConnection <= capacity else {
                if !exhausted.exchange(true, ordering: .relaxed) {
                    logger?.warning(
                        "open-file limit reached: new clients wait in the listen backlog until connections close",
                        metadata: ["listener": "\(listener)", "connections": "\(current / Self.perConnection)"])
                }
                return false
            }
            let (exchanged, actual) = inUse.compareExchange(
                expected: current, desired: current + Self.perConnection, ordering: .relaxed)
            if exchanged { return true }
            current = actual
        }
    }

    /// Counts a connection that is already open whatever the budget says (one accepted in a burst).
    public func takeAnyway() {
        inUse.add(Self.perConnection, ordering: .relaxed)
    }

    /// Gives back what `take` took, and wakes listeners that wait for room.
    public func give() {
        inUse.subtract(Self.perConnection, ordering: .relaxed)
        guard waiting.load(ordering: .relaxed) > 0 else { return }
        if exhausted.exchange(false, ordering: .relaxed) {
            logger?.notice("descriptors free again: accepting new clients")
        }
        for wake in wakers.withLockedValue({ $0 }) { wake() }
    }

    /// A listener stopped accepting until `give` (call `stoppedWaiting` once it resumed).
    public func startedWaiting() {
        waiting.add(1, ordering: .relaxed)
    }

    /// Counts a listener that stopped accepting for want of descriptors (the budget, or the
    /// process's limit when accept itself failed): `ums_balancer_accept_paused_total{listener}`.
    /// The balancer's own limit, so no node and no connection is blamed for it.
    public static func acceptPaused(listener: String) {
        Counter(label: "ums_balancer_accept_paused_total", dimensions: [("listener", listener)]).increment()
    }

    /// A listener that waited accepts again.
    public func stoppedWaiting() {
        waiting.subtract(1, ordering: .relaxed)
    }

    /// `wake` runs (on the thread that freed descriptors) whenever room frees up while a listener waits.
    public func onFreed(_ wake: @escaping @Sendable () -> Void) {
        wakers.withLockedValue { $0.append(wake) }
    }
}
