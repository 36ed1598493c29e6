import BalancerCore
import NIOConcurrencyHelpers
import Synchronization

/// The connection limits checked as a connection is accepted: the balancer's
/// (`limits.max_connections`) and, per listener, its `max_connections` and `max_connection_rate`.
/// Counts live here, not in a listener's context, so a reload keeps them.
public final class Admission: Sendable {
    fileprivate let active = Atomic<Int>(0)
    fileprivate let limit = Atomic<Int>(0)
    private let listeners = NIOLockedValueBox<[String: ListenerAdmission]>([:])

    public init() {}

    /// Applies `limits.max_connections` (nil: none) to new connections.
    public func configure(_ limits: LimitSettings) {
        limit.store(limits.maxConnections ?? 0, ordering: .relaxed)
    }

    /// The listener's admission (kept across reloads by name), configured for `listener`.
    public func listener(_ listener: ListenerConfiguration) -> ListenerAdmission {
        let admission = listeners.withLockedValue { all in
            if let known = all[listener.name] { return known }
            let made = ListenerAdmission(parent: self)
            all[listener.name] = made
            return made
        }
        admission.configure(listener)
        return admission
    }

    /// Client connections open now, across listeners.
    public var openConnections: Int { active.load(ordering: .relaxed) }
}

/// One listener's share of `Admission`.
public final class ListenerAdmission: Sendable {
    private let parent: Admission
    private let active = Atomic<Int>(0)
    private let limit = Atomic<Int>(0)
    private let rate = NIOLockedValueBox<ConnectionRateLimiter?>(nil)
    /// Whether any limit applies, read first so an unlimited listener takes no lock per connection.
    private let limited = Atomic<Bool>(false)

    fileprivate init(parent: Admission) {
        self.parent = parent
    }

    /// An admission with no limits of its own (tests, listeners built without a balancer).
    public static func unlimited() -> ListenerAdmission {
        ListenerAdmission(parent: Admission())
    }

    fileprivate func configure(_ listener: ListenerConfiguration) {
        limit.store(listener.maxConnections ?? 0, ordering: .relaxed)
        rate.withLockedValue { current in
            guard current?.rate != listener.maxConnectionRate else { return }
            current = listener.maxConnectionRate.map(ConnectionRateLimiter.init(rate:))
        }
        limited.store(listener.maxConnections != nil || listener.maxConnectionRate != nil, ordering: .relaxed)
    }

    /// Counts a new connection in, or says which limit refuses it (then nothing is counted).
    public func admit(now: MonotonicInstant) -> ConnectionLimit? {
        let balancerLimit = parent.limit.load(ordering: .relaxed)
        if balancerLimit > 0, parent.active.load(ordering: .relaxed) >= balancerLimit {
            return .balancer(balancerLimit)
        }
        if limited.load(ordering: .relaxed) {
            let listenerLimit = limit.load(ordering: .relaxed)
            if listenerLimit > 0, active.load(ordering: .relaxed) >= listenerLimit { return .listener(listenerLimit) }
            let refusedRate = rate.withLockedValue { limiter -> Int? in
                guard limiter != nil else { return nil }
                return limiter!.admit(now: now) ? nil : limiter!.rate
            }
            if let refusedRate { return .rate(refusedRate) }
        }
        active.add(1, ordering: .relaxed)
        parent.active.add(1, ordering: .relaxed)
        return nil
    }

    /// A connection `admit` counted in has ended.
    public func release() {
        active.subtract(1, ordering: .relaxed)
        parent.active.subtract(1, ordering: .relaxed)
    }
}
