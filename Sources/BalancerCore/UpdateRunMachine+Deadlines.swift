import Foundation

/// The run's deadlines: `update.max_duration` for the whole run, `update.install_timeout` per
/// installing node. Passing one raises a flag (said once) and changes nothing else.
extension UpdateRunMachine {
    /// Brings `run.flags` in line with the run and the clock; says what was raised or cleared.
    mutating func updateFlags(now: Date) -> [UpdateAction] {
        var wanted: [UpdateFlag: String] = [:]
        if run.isRunning {
            if let started = run.startedAt, now >= started.addingTimeInterval(settings.maxDuration.seconds) {
                wanted[.overdue] =
                    "the update run started \(Self.roughly(now.timeIntervalSince(started))) ago, longer than "
                    + "update.max_duration (\(DurationText.format(settings.maxDuration))): finish the update; "
                    + "changes made in update-mode servers' local copies are lost"
            }
            for (node, since) in run.installingSince
            where now >= since.addingTimeInterval(settings.installTimeout.seconds) {
                wanted[.installOverdue(node)] =
                    "\(node) has been installing for \(Self.roughly(now.timeIntervalSince(since))), longer than "
                    + "update.install_timeout (\(DurationText.format(settings.installTimeout)))"
            }
        }
        var actions: [UpdateAction] = []
        for flag in wanted.keys.sorted() where !run.flags.contains(flag) {
            actions.append(.flagRaised(flag, reason: wanted[flag] ?? ""))
        }
        for flag in run.flags where wanted[flag] == nil {
            actions.append(.flagCleared(flag, reason: clearReason(flag)))
        }
        run.flags = wanted.keys.sorted()
        return actions
    }

    private func clearReason(_ flag: UpdateFlag) -> String {
        guard run.isRunning else {
            return run.state == .completed ? "the update run completed" : "the update run ended"
        }
        switch flag {
        case .overdue: return "update.max_duration is now \(DurationText.format(settings.maxDuration))"
        case .installOverdue(let node):
            return run.installingSince[node] == nil
                ? "\(node) is no longer installing"
                : "update.install_timeout is now \(DurationText.format(settings.installTimeout))"
        }
    }

    /// "45s", "31m", "4h 5m": elapsed time for people.
    static func roughly(_ interval: TimeInterval) -> String {
        let seconds = Int(max(0, interval))
        if seconds < 120 { return "\(seconds)s" }
        if seconds < 7200 { return "\(seconds / 60)m" }
        return "\(seconds / 3600)h \(seconds % 3600 / 60)m"
    }
}
