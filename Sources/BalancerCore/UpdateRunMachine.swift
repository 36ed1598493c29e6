import Foundation

/// Drives an `UpdateRun` from node observations to actions: events in, actions out, time passed in.
///
/// Every run ends, and says how (`UpdateRun.lastRun`): `completed` when every counted node is
/// normal on the target version; back to `idle` as `no-version-change` or `rolled-back` when every
/// counted node is normal on one version that is not the target; `ended-by-operator` by hand.
/// Deadlines (`install_timeout`, `max_duration`) raise flags and never change routing.
///
/// Two balancers that watch the same nodes reach the same state, because everything is derived
/// from what the nodes report; the reconnect action is idempotent, so both may call it.
public struct UpdateRunMachine: Sendable {
    /// The tunables of the run: the reconnect step and the deadlines.
    public struct Settings: Sendable, Hashable {
        public var drainTimeout: Duration
        public var reconnectTimeout: Duration
        public var retries: Int
        /// A reconnect action is configured; without one the step is left to the operator.
        public var hasReconnectAction: Bool
        /// A node reporting `installing` longer than this is flagged `install-overdue:NODE`.
        public var installTimeout: Duration
        /// A run older than this is flagged `overdue`.
        public var maxDuration: Duration
        /// How many nodes may be unavailable (drained, reconnecting, or down) during the reconnect.
        public var maxUnavailable: Int
        /// Connections closed per second after the drain timeout; nil: the reconnect cuts them.
        public var drainRate: Int?

        public init(
            drainTimeout: Duration, reconnectTimeout: Duration, retries: Int, hasReconnectAction: Bool,
            installTimeout: Duration = UpdateSettings().installTimeout,
            maxDuration: Duration = UpdateSettings().maxDuration,
            maxUnavailable: Int = 1, drainRate: Int? = nil
        ) {
            self.drainTimeout = drainTimeout
            self.reconnectTimeout = reconnectTimeout
            self.retries = retries
            self.hasReconnectAction = hasReconnectAction
            self.installTimeout = installTimeout
            self.maxDuration = maxDuration
            self.maxUnavailable = max(1, maxUnavailable)
            self.drainRate = drainRate
        }

        /// The longest one reconnect call may take: 10 s, or half of `reconnectTimeout` when that
        /// is shorter, so a hanging node leaves room for a retry before its deadline.
        public var callTimeout: Duration {
            min(.seconds(10), reconnectTimeout / 2)
        }
    }

    public internal(set) var run: UpdateRun
    public var settings: Settings
    /// Counted nodes the last observation showed reconnecting or down: they are unavailable
    /// whoever caused it (another balancer, an operator, a crash), so none more is taken out.
    var observedUnavailable: Set<NodeID> = []
    /// While true no queued node is taken out for its reconnect: a driven update is paused. Nodes
    /// already on their way back go on.
    public var reconnectsHeld = false

    public init(run: UpdateRun = UpdateRun(), settings: Settings) {
        self.run = run
        self.settings = settings
    }

    // MARK: - Events

    /// The latest state of every configured node.
    public mutating func nodesObserved(_ nodes: [NodeStatus], now: Date) -> [UpdateAction] {
        let cluster = Cluster(nodes)
        var actions: [UpdateAction] = []
        if run.state == .idle, run.acknowledged != nil, cluster.isQuiet {
            run.acknowledged = nil
        }
        if let reason = startReason(cluster) {
            actions += start(cluster, reason: reason, now: now)
        }
        trackInstalling(cluster, now: now)
        if run.isRunning || run.state == .completed {
            actions += follow(cluster, now: now)
        }
        return actions + updateFlags(now: now)
    }

    /// The node's connections have finished (or the I/O layer gave up waiting).
    public mutating func drainFinished(_ node: NodeID, now: Date) -> [UpdateAction] {
        guard run.state == .reconnecting, [.draining, .closing].contains(run.reconnects[node]?.phase) else {
            return []
        }
        run.reconnects[node]?.phase = .due
        run.reconnects[node]?.nextAttemptAt = now
        return tick(now: now)
    }

    /// A reconnect call came back. An answer that arrives after the node's deadline has failed it
    /// is ignored: the run does not wait for calls.
    public mutating func reconnectAnswered(_ node: NodeID, _ answer: ReconnectAnswer, now: Date) -> [UpdateAction] {
        guard var reconnect = run.reconnects[node], reconnect.phase == .calling else { return [] }
        switch answer {
        case .accepted(let detail):
            reconnect.phase = .waiting
            reconnect.lastAnswer = detail
        case .rejected(let detail):
            reconnect.lastAnswer = detail
            if reconnect.attempts > settings.retries {
                reconnect.phase = .failed
            } else {
                reconnect.phase = .due
                reconnect.nextAttemptAt = now.addingTimeInterval(Self.backoff(afterAttempt: reconnect.attempts))
            }
        }
        run.reconnects[node] = reconnect
        return stallIfFailed()
    }

    /// Time passed: drain timeouts, retries that are due, reconnect deadlines (also while a call is
    /// in flight), and the run's own deadlines.
    public mutating func tick(now: Date) -> [UpdateAction] {
        var actions: [UpdateAction] = []
        if run.state == .reconnecting {
            actions += advanceReconnects(now: now)
        }
        return actions + updateFlags(now: now)
    }

    /// The operator asks to try a stalled reconnect again. Without a reconnect action nothing is
    /// called: the nodes get a fresh `reconnect_timeout` to be reconnected by hand.
    public mutating func retryRequested(now: Date) -> [UpdateAction] {
        guard run.state == .stalled else { return [] }
        var retried: [NodeID] = []
        // Queued nodes keep waiting for their turn.
        for (node, reconnect) in run.reconnects where ![.done, .queued].contains(reconnect.phase) {
            var again = NodeReconnect(phase: .due, drainStartedAt: reconnect.drainStartedAt)
            again.nextAttemptAt = now
            if !settings.hasReconnectAction {
                again.phase = .waiting
                again.deadline = now.addingTimeInterval(settings.reconnectTimeout.seconds)
            }
            again.lastAnswer = reconnect.lastAnswer
            run.reconnects[node] = again
            retried.append(node)
        }
        let change = transition(to: .reconnecting, reason: "operator asked to retry the reconnect")
        let byHand = settings.hasReconnectAction ? [] : [UpdateAction.reconnectDueForOperator(retried.sorted())]
        return [change] + byHand + tick(now: now)
    }

    /// After a restart from persisted state: drains the nodes still on their way back again (those
    /// the run drained: without a reconnect action it drains none), never calls twice a node whose
    /// call may already have reached it, and derives the flags again.
    public mutating func resumed(now: Date) -> [UpdateAction] {
        var actions: [UpdateAction] = []
        for node in run.reconnects.keys.sorted() {
            guard var reconnect = run.reconnects[node], ![.done, .queued].contains(reconnect.phase) else { continue }
            if reconnect.phase == .calling {
                reconnect.phase = .waiting
                reconnect.lastAnswer = "balancer restarted during the call; assuming it arrived"
            }
            run.reconnects[node] = reconnect
            if settings.hasReconnectAction { actions.append(.drain(node)) }
        }
        return actions + updateFlags(now: now)
    }

    // MARK: - Helpers

    mutating func transition(to state: UpdateRun.State, reason: String) -> UpdateAction {
        let from = run.state
        run.state = state
        return .stateChanged(from: from, to: state, reason: reason)
    }
}

extension Duration {
    /// The duration in (fractional) seconds.
    public var seconds: TimeInterval {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
