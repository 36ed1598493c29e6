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
        return actions + stallIfFailed()
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
        let held = run.reconnects.filter { $0.value.phase != .done }.keys.sorted()
        for node in held { run.reconnects[node]?.phase = .done }
        return held.map(UpdateAction.release)
    }

    /// 1 s, 2 s, 4 s ... capped at 30 s.
    static func backoff(afterAttempt attempt: Int) -> TimeInterval {
        min(30, pow(2, Double(max(0, attempt - 1))))
    }
}
