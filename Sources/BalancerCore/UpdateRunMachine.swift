import Foundation

/// Drives an `UpdateRun` from node observations to actions: events in, actions out, time passed in.
///
/// Two balancers that watch the same nodes reach the same state, because everything is derived
/// from what the nodes report; the reconnect action is idempotent, so both may call it.
public struct UpdateRunMachine: Sendable {
    /// The tunables of the reconnect step.
    public struct Settings: Sendable, Hashable {
        public var drainTimeout: Duration
        public var reconnectTimeout: Duration
        public var retries: Int
        /// A reconnect action is configured; without one the step is left to the operator.
        public var hasReconnectAction: Bool

        public init(drainTimeout: Duration, reconnectTimeout: Duration, retries: Int, hasReconnectAction: Bool) {
            self.drainTimeout = drainTimeout
            self.reconnectTimeout = reconnectTimeout
            self.retries = retries
            self.hasReconnectAction = hasReconnectAction
        }
    }

    public private(set) var run: UpdateRun
    public var settings: Settings

    public init(run: UpdateRun = UpdateRun(), settings: Settings) {
        self.run = run
        self.settings = settings
    }

    // MARK: - Events

    /// The latest state of every configured node.
    public mutating func nodesObserved(_ nodes: [NodeStatus], now: Date) -> [UpdateAction] {
        let counted = nodes.filter { $0.admin != .maintenance }
        let versions = counted.compactMap { $0.version.flatMap(Version.init) }
        var actions: [UpdateAction] = []

        if shouldStartRun(counted, versions: versions) {
            let previous = run.state
            let starting = previous == .completed ? run.targetVersion : versions.min()?.description
            actions += releaseAll()
            run = UpdateRun()
            run.state = .inProgress
            run.startingVersion = starting
            run.startedAt = now
            actions.append(
                .stateChanged(from: previous, to: .inProgress, reason: startReason(counted, versions: versions)))
        }
        guard run.isRunning || run.state == .completed else { return actions }

        if let highest = versions.max(), run.startingVersion.flatMap(Version.init).map({ highest > $0 }) ?? true,
            run.targetVersion.flatMap(Version.init).map({ highest > $0 }) ?? true
        {
            run.targetVersion = highest.description
            actions.append(.targetChanged(highest.description))
            if run.state == .reconnecting || run.state == .stalled {
                actions += releaseAll()
                actions.append(transition(to: .inProgress, reason: "a newer version \(highest) appeared"))
            }
        }
        let target = run.targetVersion.flatMap(Version.init)
        let onTarget = { (node: NodeStatus) in target != nil && node.version.flatMap(Version.init) == target }
        run.total = counted.count
        run.updated = counted.filter { onTarget($0) && [.normal, .update, .reconnecting].contains($0.mode) }.count

        switch run.state {
        case .inProgress:
            let finalNodeCompleted =
                !counted.isEmpty
                && counted.allSatisfy { onTarget($0) && [.normal, .update, .reconnecting].contains($0.mode) }
                && counted.contains { $0.mode == .normal }
            guard finalNodeCompleted else { break }
            let inUpdateMode = counted.filter { $0.mode != .normal }.map(\.id)
            if inUpdateMode.isEmpty {
                actions.append(
                    transition(to: .completed, reason: "every server is normal on \(run.targetVersion ?? "?")"))
                run.finishedAt = now
            } else {
                actions += beginReconnect(inUpdateMode, now: now)
            }
        case .reconnecting, .stalled:
            for node in counted where run.reconnects[node.id].map({ $0.phase != .done }) == true {
                if node.mode == .normal && onTarget(node) {
                    run.reconnects[node.id]?.phase = .done
                    actions.append(.release(node.id))
                }
            }
            if counted.allSatisfy({ $0.mode == .normal && onTarget($0) }) {
                actions += releaseAll()
                actions.append(
                    transition(to: .completed, reason: "every server is normal on \(run.targetVersion ?? "?")"))
                run.finishedAt = now
            }
        case .idle, .completed:
            break
        }
        return actions
    }

    /// The node's connections have finished (or the I/O layer gave up waiting).
    public mutating func drainFinished(_ node: NodeID, now: Date) -> [UpdateAction] {
        guard run.state == .reconnecting, run.reconnects[node]?.phase == .draining else { return [] }
        run.reconnects[node]?.phase = .due
        run.reconnects[node]?.nextAttemptAt = now
        return tick(now: now)
    }

    /// A reconnect call came back.
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

    /// Time passed: drain timeouts, retries that are due, deadlines.
    public mutating func tick(now: Date) -> [UpdateAction] {
        guard run.state == .reconnecting else { return [] }
        var actions: [UpdateAction] = []
        for node in run.reconnects.keys.sorted() {
            guard var reconnect = run.reconnects[node] else { continue }
            switch reconnect.phase {
            case .draining where now >= reconnect.drainStartedAt.addingTimeInterval(settings.drainTimeout.seconds):
                reconnect.phase = .due
                reconnect.nextAttemptAt = now
                fallthrough
            case .due where (reconnect.nextAttemptAt ?? now) <= now:
                if let deadline = reconnect.deadline, now >= deadline {
                    reconnect.phase = .failed
                    reconnect.lastAnswer = reconnect.lastAnswer ?? "deadline passed"
                    break
                }
                reconnect.phase = .calling
                reconnect.attempts += 1
                if reconnect.deadline == nil {
                    reconnect.deadline = now.addingTimeInterval(settings.reconnectTimeout.seconds)
                }
                actions.append(.callReconnect(node, attempt: reconnect.attempts))
            case .waiting where reconnect.deadline.map { now >= $0 } ?? false:
                reconnect.phase = .failed
                reconnect.lastAnswer =
                    "not back in normal mode within \(DurationText.format(settings.reconnectTimeout))"
            default:
                break
            }
            run.reconnects[node] = reconnect
        }
        return actions + stallIfFailed()
    }

    /// The operator asks to try a stalled reconnect again.
    public mutating func retryRequested(now: Date) -> [UpdateAction] {
        guard run.state == .stalled else { return [] }
        for (node, reconnect) in run.reconnects where reconnect.phase != .done {
            var retried = NodeReconnect(phase: .due, drainStartedAt: reconnect.drainStartedAt)
            retried.nextAttemptAt = now
            retried.lastAnswer = reconnect.lastAnswer
            run.reconnects[node] = retried
        }
        let change = transition(to: .reconnecting, reason: "operator asked to retry the reconnect")
        return [change] + tick(now: now)
    }

    /// After a restart from persisted state: drains the nodes still on their way back again, and
    /// never calls twice a node whose call may already have reached it.
    public mutating func resumed(now: Date) -> [UpdateAction] {
        var actions: [UpdateAction] = []
        for node in run.reconnects.keys.sorted() {
            guard var reconnect = run.reconnects[node], reconnect.phase != .done else { continue }
            if reconnect.phase == .calling {
                reconnect.phase = .waiting
                reconnect.lastAnswer = "balancer restarted during the call; assuming it arrived"
            }
            run.reconnects[node] = reconnect
            actions.append(.drain(node))
        }
        return actions
    }

    // MARK: - Rules

    private func shouldStartRun(_ nodes: [NodeStatus], versions: [Version]) -> Bool {
        switch run.state {
        case .idle:
            return nodes.contains { $0.mode == .installing || $0.mode == .update } || Set(versions).count > 1
        case .completed:
            let target = run.targetVersion.flatMap(Version.init)
            return nodes.contains { $0.mode == .installing } || versions.contains { $0 != target }
        case .inProgress, .reconnecting, .stalled:
            return false
        }
    }

    private func startReason(_ nodes: [NodeStatus], versions: [Version]) -> String {
        if let node = nodes.first(where: { $0.mode == .installing || $0.mode == .update }) {
            return "\(node.id) reports \(node.mode)"
        }
        return
            "servers report different versions (\(Set(versions.map(\.description)).sorted().joined(separator: ", ")))"
    }

    private mutating func beginReconnect(_ nodes: [NodeID], now: Date) -> [UpdateAction] {
        var actions = [
            transition(
                to: .reconnecting,
                reason:
                    "the final server completed; \(nodes.joined(separator: ", ")) must reconnect to the productive database"
            )
        ]
        run.reconnectStartedAt = now
        for node in nodes {
            if settings.hasReconnectAction {
                run.reconnects[node] = NodeReconnect(phase: .draining, drainStartedAt: now)
                actions.append(.drain(node))
            } else {
                var reconnect = NodeReconnect(phase: .waiting, drainStartedAt: now)
                reconnect.deadline = now.addingTimeInterval(settings.reconnectTimeout.seconds)
                run.reconnects[node] = reconnect
            }
        }
        if !settings.hasReconnectAction { actions.append(.reconnectDueForOperator(nodes)) }
        return actions
    }

    private mutating func stallIfFailed() -> [UpdateAction] {
        let failed = run.reconnects.filter { $0.value.phase == .failed }.keys.sorted()
        guard run.state == .reconnecting, !failed.isEmpty else { return [] }
        let why = failed.map { "\($0) (\(run.reconnects[$0]?.lastAnswer ?? "no answer"))" }.joined(separator: ", ")
        return [transition(to: .stalled, reason: "reconnect failed: \(why)")]
    }

    private mutating func releaseAll() -> [UpdateAction] {
        let held = run.reconnects.filter { $0.value.phase != .done }.keys.sorted()
        for node in held { run.reconnects[node]?.phase = .done }
        return held.map(UpdateAction.release)
    }

    private mutating func transition(to state: UpdateRun.State, reason: String) -> UpdateAction {
        let from = run.state
        run.state = state
        return .stateChanged(from: from, to: state, reason: reason)
    }

    /// 1 s, 2 s, 4 s ... capped at 30 s.
    static func backoff(afterAttempt attempt: Int) -> TimeInterval {
        min(30, pow(2, Double(max(0, attempt - 1))))
    }
}

extension Duration {
    /// The duration in (fractional) seconds.
    public var seconds: TimeInterval {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
