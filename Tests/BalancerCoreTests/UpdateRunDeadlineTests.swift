import BalancerCore
import Foundation
import Testing

/// Deadlines: a run or an install that takes too long is flagged once, loudly, and routing does
/// not change; a reconnect deadline is met whatever the calls are doing.
@Suite struct UpdateRunDeadlineTests: RunScenario {
    var machine = UpdateRunMachine(settings: RunScenarioDefaults.settings)
    var now = RunScenarioDefaults.start
    var nodes = RunScenarioDefaults.nodes

    @Test mutating func aNodeInstallingLongerThanInstallTimeoutIsFlaggedOnceAndClearedWhenItIsDone() {
        _ = report("ums2", .installing)
        #expect(advance(30 * 60 - 1).isEmpty)
        #expect(
            advance(1) == [
                .flagRaised(
                    .installOverdue("ums2"),
                    reason: "ums2 has been installing for 30m, longer than update.install_timeout (30m)")
            ])
        #expect(machine.run.flags == [.installOverdue("ums2")])
        #expect(machine.run.flags.map(\.description) == ["install-overdue:ums2"])
        // Said once, not per tick; and nothing else happens: routing and the run stay as they are.
        for _ in 0..<20 { #expect(advance(60).isEmpty) }
        #expect(machine.run.state == .inProgress)
        #expect(machine.run.summary.hasSuffix("[install-overdue:ums2]"))

        let actions = report("ums2", .update, "12.07.100")
        #expect(actions.contains(.flagCleared(.installOverdue("ums2"), reason: "ums2 is no longer installing")))
        #expect(machine.run.flags.isEmpty)
    }

    @Test mutating func aFailedProbeDuringAnInstallDoesNotRestartItsClock() {
        _ = report("ums1", .installing)
        _ = advance(20 * 60)
        nodes[0].health = .down
        _ = report("ums1", .unknown)
        _ = advance(5 * 60)
        nodes[0].health = .up
        #expect(raised(report("ums1", .installing)).isEmpty)
        #expect(raised(advance(5 * 60)) == [.installOverdue("ums1")])
    }

    @Test mutating func aRunOlderThanMaxDurationIsFlaggedOverdueBesideAnOverdueInstall() {
        _ = report("ums1", .installing)
        _ = report("ums1", .update, "12.07.100")
        _ = advance(3.5 * 3600)
        _ = report("ums2", .installing)
        #expect(raised(advance(1800 - 1)).isEmpty)
        let actions = advance(1)
        #expect(raised(actions) == [.installOverdue("ums2"), .overdue])
        #expect(
            actions.last
                == .flagRaised(
                    .overdue,
                    reason: "the update run started 4h 0m ago, longer than update.max_duration (4h): finish the "
                        + "update; changes made in update-mode servers' local copies are lost"))
        #expect(machine.run.flags.map(\.description) == ["install-overdue:ums2", "overdue"])
        #expect(machine.run.state == .inProgress)
        #expect(!actions.contains { if case .stateChanged = $0 { true } else { false } })

        #expect(cleared(report("ums2", .update, "12.07.100")) == [.installOverdue("ums2")])
        // Overdue stays through the reconnect and goes when the run completes, said once.
        _ = report("ums3", .installing)
        #expect(cleared(report("ums3", .normal, "12.07.100")).isEmpty)
        #expect(machine.run.state == .reconnecting)
        #expect(machine.run.flags == [.overdue])
        _ = report("ums1", .normal)
        let completed = report("ums2", .normal)
        #expect(machine.run.state == .completed)
        #expect(cleared(completed) == [.overdue])
        #expect(machine.run.flags.isEmpty)
        #expect(advance(3600).isEmpty)
    }

    @Test mutating func deadlinesComeFromTheSettingsAndAReloadCanMoveThem() {
        machine.settings.installTimeout = .seconds(90)
        machine.settings.maxDuration = .seconds(600)
        _ = report("ums3", .installing)
        #expect(raised(advance(90)) == [.installOverdue("ums3")])
        #expect(raised(advance(510)) == [.overdue])
        machine.settings.maxDuration = .seconds(3600)
        #expect(
            advance(1) == [.flagCleared(.overdue, reason: "update.max_duration is now 1h")])
    }

    // MARK: - Reconnect deadlines

    /// ums1 in update mode, ums2 normal, both on 12.07.100: ums1 must reconnect, with an 8 s deadline.
    mutating func reconnectWithEightSecondDeadline() -> [UpdateAction] {
        machine.settings.reconnectTimeout = .seconds(8)
        machine.settings.retries = 5
        nodes.removeLast()
        _ = report("ums1", .installing)
        _ = report("ums1", .update, "12.07.100")
        _ = report("ums2", .installing)
        _ = report("ums2", .normal, "12.07.100")
        return machine.drainFinished("ums1", now: now)
    }

    @Test mutating func aCallInFlightPastTheDeadlineStallsTheRunOnTime() {
        // Each call gets half of reconnect.timeout at most, so a retry fits before the deadline.
        #expect(reconnectWithEightSecondDeadline() == [.callReconnect("ums1", attempt: 1, timeout: .seconds(4))])
        // The node never answers; the call is in flight when the deadline passes.
        for _ in 0..<31 { #expect(advance(0.25).isEmpty) }
        #expect(
            advance(0.25) == [
                .stateChanged(
                    from: .reconnecting, to: .stalled,
                    reason:
                        "reconnect failed: ums1 (not back in normal mode within 8s (the reconnect call had no answer yet))"
                )
            ])
        // The answer that finally arrives changes nothing.
        #expect(machine.reconnectAnswered("ums1", .accepted("HTTP 202"), now: now).isEmpty)
        #expect(machine.run.state == .stalled)
    }

    @Test mutating func aRetryNeverGetsMoreTimeThanIsLeftAndTheDeadlineHoldsThroughBackoff() {
        _ = reconnectWithEightSecondDeadline()
        _ = advance(4)
        #expect(machine.reconnectAnswered("ums1", .rejected("timed out"), now: now).isEmpty)
        #expect(advance(1) == [.callReconnect("ums1", attempt: 2, timeout: .seconds(3))])
        _ = advance(2.5)
        #expect(machine.reconnectAnswered("ums1", .rejected("connection refused"), now: now).isEmpty)
        // The next attempt would be due at 9.5 s (2 s backoff); the deadline at 8 s comes first.
        #expect(advance(0.25).isEmpty)
        let stalled = advance(0.25)
        #expect(changes(stalled).first?.hasPrefix("reconnecting -> stalled") == true)
        #expect(machine.run.reconnects["ums1"]?.lastAnswer?.hasSuffix("(last answer: connection refused)") == true)
        #expect(now == RunScenarioDefaults.start.addingTimeInterval(8))
    }

    @Test mutating func aCallIsNeverLongerThanTenSeconds() {
        machine.settings.reconnectTimeout = .seconds(300)
        _ = installEverywhere()
        #expect(machine.drainFinished("ums1", now: now) == [.callReconnect("ums1", attempt: 1, timeout: .seconds(10))])
    }
}
