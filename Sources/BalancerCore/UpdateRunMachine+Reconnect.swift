import Foundation

/// The reconnect step: drain, call, wait for normal, release; a node not back by its deadline
/// stalls the run.
extension UpdateRunMachine {
    mutating func beginReconnect(_ nodes: [NodeID], now: Date) -> [UpdateAction] {
        var actions = [
            transition(
                to: .reconnecting,
                reason:
                    "the final server completed; \(nodes.joined(separator: ", ")) must reconnect to the productive database"
            )
        ]
        run.reconnectStartedAt = now
        // In one order on every balancer, so that two of them take the same node out first.
        for node in nodes.sorted() {
            if settings.hasReconnectAction {
                run.reconnects[node] = NodeReconnect(phase: .queued, drainStartedAt: now)
            } else {
                var reconnect = NodeReconnect(phase: .waiting, drainStartedAt: now)
                reconnect.deadline = now.addingTimeInterval(settings.reconnectTimeout.seconds)
                run.reconnects[node] = reconnect
            }
        }
        if !settings.hasReconnectAction { actions.append(.reconnectDueForOperator(nodes)) }
        return actions + admitQueued(now: now)
    }

    /// Nodes unavailable now: those this balancer took out and are not back, and those the nodes
    /// report reconnecting or down.
    var unavailable: Set<NodeID> {
        let taken = run.reconnects.filter { ![.queued, .done].contains($0.value.phase) }.keys
        return observedUnavailable.union(taken)
    }

    /// Starts the drain of queued nodes, in order, while fewer than `max_unavailable` are unavailable.
    mutating func admitQueued(now: Date) -> [UpdateAction] {
        guard run.state == .reconnecting, !reconnectsHeld else { return [] }
        var actions: [UpdateAction] = []
        var out = unavailable
        for node in run.reconnects.keys.sorted() where run.reconnects[node]?.phase == .queued {
            guard out.count < settings.maxUnavailable else { break }
            run.reconnects[node] = NodeReconnect(phase: .draining, drainStartedAt: now)
            out.insert(node)
            actions.append(.drain(node))
        }
        return actions
    }

    /// Drain timeouts, calls that are due, and deadlines. A deadline is a deadline whatever the
    /// node's reconnect is doing: a call in flight, a retry waiting for its backoff, or no answer.
    mutating func advanceReconnects(now: Date) -> [UpdateAction] {
        var actions: [UpdateAction] = []
        for node in run.reconnects.keys.sorted() {
            guard var reconnect = run.reconnects[node] else { continue }
            if let deadline = reconnect.deadline, now >= deadline,
                [.due, .calling, .waiting].contains(reconnect.phase)
            {
                reconnect.lastAnswer = missedDeadline(reconnect)
                reconnect.phase = .failed
                run.reconnects[node] = reconnect
                continue
            }
            switch reconnect.phase {
            case .draining
            where now >= reconnect.drainStartedAt.addingTimeInterval(settings.drainTimeout.seconds)
                && settings.drainRate != nil:
                // Paced: the reconnect is called once the last connection is gone (`drainFinished`).
                reconnect.phase = .closing
                actions.append(.closeConnections(node, perSecond: settings.drainRate ?? 1))
            case .draining where now >= reconnect.drainStartedAt.addingTimeInterval(settings.drainTimeout.seconds):
                reconnect.phase = .due
                reconnect.nextAttemptAt = now
                fallthrough
            case .due where (reconnect.nextAttemptAt ?? now) <= now:
                reconnect.phase = .calling
                reconnect.attempts += 1
                let deadline = reconnect.deadline ?? now.addingTimeInterval(settings.reconnectTimeout.seconds)
                reconnect.deadline = deadline
                actions.append(
                    .callReconnect(node, attempt: reconnect.attempts, timeout: callTimeout(until: deadline, now: now)))
            default:
                break
            }
            run.reconnects[node] = reconnect
        }
        return actions + stallIfFailed() + admitQueued(now: now)
    }

    /// The call's own timeout: never longer than `callTimeout`, nor than the time left.
    private func callTimeout(until deadline: Date, now: Date) -> Duration {
        let left = Duration.milliseconds(Int64((deadline.timeIntervalSince(now) * 1000).rounded(.down)))
        return max(.zero, min(settings.callTimeout, left))
    }

    private func missedDeadline(_ reconnect: NodeReconnect) -> String {
        let within = "not back in normal mode within \(DurationText.format(settings.reconnectTimeout))"
        switch reconnect.phase {
        case .calling: return within + " (the reconnect call had no answer yet)"
        case .due: return within + " (last answer: \(reconnect.lastAnswer ?? "none"))"
        default: return within
        }
    }

    mutating func stallIfFailed() -> [UpdateAction] {
        let failed = run.reconnects.filter { $0.value.phase == .failed }.keys.sorted()
        guard run.state == .reconnecting, !failed.isEmpty else { return [] }
        let why = failed.map { "\($0) (\(run.reconnects[$0]?.lastAnswer ?? "no answer"))" }.joined(separator: ", ")
        return [transition(to: .stalled, reason: "reconnect failed: \(why)")]
    }

    /// Takes the balancer's drain off every node still held for its reconnect.
    mutating func releaseAll() -> [UpdateAction] {
        let pending = run.reconnects.filter { $0.value.phase != .done }
        for node in pending.keys { run.reconnects[node]?.phase = .done }
        // Queued nodes were never drained: nothing to release.
        return pending.filter { $0.value.phase != .queued }.keys.sorted().map(UpdateAction.release)
    }

    /// 1 s, 2 s, 4 s ... capped at 30 s.
    static func backoff(afterAttempt attempt: Int) -> TimeInterval {
        min(30, pow(2, Double(max(0, attempt - 1))))
    }
}
