/// What the executor of one request does next.
public enum ExchangeAction<Target: RelayTarget>: Sendable {
    /// Nothing until the next event.
    case none
    /// Ask routing where a request of this class goes; answer with `routed`, `refused` or `queued`.
    case route(TrafficClass)
    /// Get a connection to `target`: an idle one from the pool when `reuse`, else a new one;
    /// answer with `acquired(reused:)` or `acquireFailed(_:now:)`.
    case acquire(Target, reuse: Bool)
    /// The node connection is ready: send the head, then the body as it arrives.
    case send
    /// Answer the client with this instead of a node's answer (whatever was sent to a node is dropped).
    case answer(BalancerAnswer)
    /// The node failed after its answer had begun: the client connection must close.
    case abort
}

extension ExchangeAction: Equatable where Target: Equatable {}

/// The way of one request to a node, with no sockets in it: route, take a pooled connection or
/// connect, fall over to the next node on a failed connect, send again on a fresh connection
/// when a pooled one turns out closed (only when that is safe), and how it ended.
///
/// The rules users rely on: a failed connect is retried on the next eligible node before the
/// client notices; a pooled connection the node closed before answering gets the request again
/// on a fresh connection only if the request is retryable (idempotent, no body: nothing of it is
/// lost); once any of the node's answer has gone to the client, nothing is retried.
public struct HTTPExchangeMachine<Target: RelayTarget>: Sendable {
    /// Where the request stands.
    public enum Phase: Sendable, Hashable {
        case routing
        /// Every eligible node is at its `max_connections`: waiting for a slot.
        case queued
        case acquiring
        /// The request goes to the node; no answer yet.
        case sending
        /// The node's answer is on its way to the client.
        case responding
        case done
    }

    public let trafficClass: TrafficClass
    /// Safe to send again: idempotent and without a body.
    public let retryable: Bool
    public let queueTimeout: Duration
    /// How long a new node connection may take (TCP and TLS) before the next node is tried.
    public let connectTimeout: Duration
    public private(set) var phase = Phase.routing
    /// The node that answered (or was last tried).
    public private(set) var node: NodeID?
    /// Times the request was sent again (a closed pooled connection, a node that closed without answering).
    public private(set) var retries = 0
    /// Nodes that let the request down, in order (for passive health and the log).
    public private(set) var failures: [NodeFailure] = []
    public private(set) var outcome: RequestOutcome?
    /// Why it ended other than answered, for the log.
    public private(set) var reason: ConnectionEndReason?
    private var targets: [Target] = []
    private var next = 0
    private var current: Target?
    private var reusedConnection = false
    private var freshRetry = false
    private var queueDeadline: MonotonicInstant?
    private var connectDeadline: MonotonicInstant?

    public init(trafficClass: TrafficClass, retryable: Bool, queueTimeout: Duration, connectTimeout: Duration) {
        self.trafficClass = trafficClass
        self.retryable = retryable
        self.queueTimeout = queueTimeout
        self.connectTimeout = connectTimeout
    }

    /// The target being tried or answering.
    public var currentTarget: Target? { current }

    /// The request head is complete: find it a node.
    public mutating func start() -> ExchangeAction<Target> {
        guard phase == .routing else { return .none }
        return .route(trafficClass)
    }

    // MARK: - Routing

    /// Routing's answer: try these targets in order.
    public mutating func routed(_ targets: [Target]) -> ExchangeAction<Target> {
        guard phase == .routing else { return .none }
        self.targets = targets
        next = 0
        return acquireNext()
    }

    /// No node may take a request of this class.
    public mutating func refused(_ refusal: Refusal) -> ExchangeAction<Target> {
        guard phase == .routing else { return .none }
        return answer(.refused, .noEligibleNode(refusal), status: 503, retryAfter: 30)
    }

    /// Every eligible node is at its `max_connections`: wait, routing again on each tick, up to the queue timeout.
    public mutating func queued(now: MonotonicInstant) -> ExchangeAction<Target> {
        guard phase == .routing else { return .none }
        let until = queueDeadline ?? now + queueTimeout
        guard now < until else {
            return answer(.refused, .limit(.queueTimeout(trafficClass, queueTimeout)), status: 503, retryAfter: 5)
        }
        queueDeadline = until
        phase = .queued
        return .none
    }

    /// Time passed: a new node connection that takes too long fails over to the next node; a
    /// queued request routes again, or gives up at the queue timeout.
    public mutating func tick(now: MonotonicInstant) -> ExchangeAction<Target> {
        if phase == .acquiring, let connectDeadline, now >= connectDeadline { return acquireFailed(.timedOut) }
        guard phase == .queued, let queueDeadline else { return .none }
        guard now < queueDeadline else {
            return answer(.refused, .limit(.queueTimeout(trafficClass, queueTimeout)), status: 503, retryAfter: 5)
        }
        phase = .routing
        return .route(trafficClass)
    }

    // MARK: - The node connection

    /// The executor connects afresh (no idle connection was at hand): it has `connectTimeout`.
    public mutating func connecting(now: MonotonicInstant) {
        guard phase == .acquiring else { return }
        connectDeadline = now + connectTimeout
    }

    /// A connection to the current target is ready (`reused`: an idle one from the pool).
    public mutating func acquired(reused: Bool) -> ExchangeAction<Target> {
        guard phase == .acquiring, let current else { return .none }
        connectDeadline = nil
        node = current.node
        reusedConnection = reused
        phase = .sending
        return .send
    }

    /// Connecting to the current target failed: the next one is tried.
    public mutating func acquireFailed(_ kind: NodeFailureKind) -> ExchangeAction<Target> {
        guard phase == .acquiring, let current else { return .none }
        connectDeadline = nil
        failures.append(NodeFailure(node: current.node, kind: kind))
        return acquireNext()
    }

    /// The node connection closed or failed; `kind` is how, when it says something about the node.
    public mutating func nodeFailed(_ kind: NodeFailureKind = .closedWithoutAnswer) -> ExchangeAction<Target> {
        switch phase {
        case .sending:
            guard let current else { return .none }
            if reusedConnection, retryable, !freshRetry {
                // A pooled connection the node closed while it idled: not the node's failure.
                freshRetry = true
                retries += 1
                phase = .acquiring
                return .acquire(current, reuse: false)
            }
            let failure = NodeFailure(node: current.node, kind: kind)
            // A pooled connection closing is the node ending an idle connection, not a fault of it.
            if !reusedConnection { failures.append(failure) }
            if retryable, next < targets.count {
                retries += 1
                return acquireNext()
            }
            let named = failures.last == failure ? failures : failures + [failure]
            return answer(.unavailable, .everyNodeFailed(trafficClass, named), status: 502, retryAfter: nil)
        case .responding:
            outcome = .nodeFailed
            reason = .socketFailed(.node, .connectionReset)
            phase = .done
            return .abort
        case .routing, .queued, .acquiring, .done:
            return .none
        }
    }

    /// The node's answer began: from now on nothing is sent again.
    public mutating func responseStarted() {
        guard phase == .sending else { return }
        phase = .responding
    }

    /// The node's answer reached the client whole (`upgraded`: it switched protocols).
    public mutating func responseFinished(upgraded: Bool = false) {
        guard phase == .responding else { return }
        outcome = upgraded ? .upgraded : .answered
        phase = .done
    }

    /// The exchange ends early for a reason from outside: the client left, a drain, shutdown.
    public mutating func ended(_ outcome: RequestOutcome, _ reason: ConnectionEndReason? = nil) {
        guard phase != .done else { return }
        self.outcome = outcome
        self.reason = reason
        phase = .done
    }

    private mutating func acquireNext() -> ExchangeAction<Target> {
        guard next < targets.count else {
            current = nil
            return answer(.unavailable, .everyNodeFailed(trafficClass, failures), status: 503, retryAfter: 5)
        }
        current = targets[next]
        next += 1
        freshRetry = false
        phase = .acquiring
        return .acquire(current!, reuse: true)
    }

    private mutating func answer(
        _ outcome: RequestOutcome, _ reason: ConnectionEndReason, status: Int, retryAfter: Int?
    ) -> ExchangeAction<Target> {
        self.outcome = outcome
        self.reason = reason
        phase = .done
        return .answer(
            BalancerAnswer(status: status, text: RefusalPage.text(for: reason), retryAfter: retryAfter))
    }
}
