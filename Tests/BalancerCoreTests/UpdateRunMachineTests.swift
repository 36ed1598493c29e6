import BalancerCore
import Foundation
import Testing

/// The update run driven through whole rolling updates, with time passed in: tests never sleep.
@Suite struct UpdateRunMachineTests: RunScenario {
    static let settings = RunScenarioDefaults.settings
    var machine = UpdateRunMachine(settings: settings)
    var now = RunScenarioDefaults.start
    var nodes = RunScenarioDefaults.nodes

    @Test mutating func aFullRollingUpdateEndsCompletedWithOneReconnectPerUpdateModeNode() {
        #expect(machine.nodesObserved(nodes, now: now).isEmpty)
        #expect(machine.run.state == .idle)

        #expect(
            report("ums1", .installing) == [
                .stateChanged(from: .idle, to: .inProgress, reason: "ums1 reports installing")
            ])
        #expect(machine.run.isRunning)
        #expect(machine.run.targetVersion == nil)
        #expect(machine.run.startingVersion == "12.06.100")

        #expect(report("ums1", .update, "12.07.100") == [.targetChanged("12.07.100")])
        #expect((machine.run.updated, machine.run.total) == (1, 3))
        _ = report("ums2", .installing)
        _ = report("ums2", .update, "12.07.100")
        #expect(machine.run.summary == "update 12.07.100: 2 of 3 servers updated")
        _ = report("ums3", .installing)
        #expect(machine.run.updated == 2)

        let final = report("ums3", .normal, "12.07.100")
        #expect(
            final == [
                .stateChanged(
                    from: .inProgress, to: .reconnecting,
                    reason: "the final server completed; ums1, ums2 must reconnect to the productive database"),
                .drain("ums1"), .drain("ums2"),
            ])
        #expect(machine.run.updated == 3)

        #expect(machine.drainFinished("ums1", now: now) == [.callReconnect("ums1", attempt: 1, timeout: .seconds(10))])
        #expect(machine.reconnectAnswered("ums1", .accepted("202"), now: now).isEmpty)
        #expect(machine.drainFinished("ums2", now: now) == [.callReconnect("ums2", attempt: 1, timeout: .seconds(10))])
        #expect(machine.reconnectAnswered("ums2", .accepted("202"), now: now).isEmpty)
        #expect(machine.run.summary == "update 12.07.100: 3 of 3 servers updated, reconnecting ums1, ums2")

        _ = advance(1)
        #expect(report("ums1", .reconnecting).isEmpty)
        #expect(report("ums1", .normal) == [.release("ums1")])
        #expect(advance(60).isEmpty)
        #expect(
            report("ums2", .normal) == [
                .release("ums2"),
                .stateChanged(from: .reconnecting, to: .completed, reason: "every server is normal on 12.07.100"),
            ])
        #expect(machine.run.summary == "update 12.07.100: 3 of 3 servers updated, completed")
        #expect(!machine.run.isRunning)
        #expect(machine.run.reconnects.values.allSatisfy { $0.attempts == 1 })
    }

    @Test mutating func theDrainTimeoutStartsTheReconnectWhenConnectionsLinger() {
        _ = installEverywhere()
        #expect(advance(29).isEmpty)
        #expect(
            advance(1) == [
                .callReconnect("ums1", attempt: 1, timeout: .seconds(10)),
                .callReconnect("ums2", attempt: 1, timeout: .seconds(10)),
            ])
    }

    @Test mutating func aNodeFailingMidInstallHoldsTheRunUntilTheOperatorTakesItOut() {
        _ = report("ums1", .installing)
        nodes[0].health = .down
        _ = report("ums1", .unknown)
        _ = report("ums2", .installing)
        _ = report("ums2", .update, "12.07.100")
        _ = report("ums3", .installing)
        #expect(!report("ums3", .normal, "12.07.100").contains(.drain("ums2")))
        #expect(machine.run.state == .inProgress)
        #expect((machine.run.updated, machine.run.total) == (2, 3))

        nodes[0].admin = .maintenance
        let actions = machine.nodesObserved(nodes, now: now)
        #expect(actions.contains(.drain("ums2")))
        #expect(machine.run.state == .reconnecting)
        #expect((machine.run.updated, machine.run.total) == (2, 2))
    }

    @Test mutating func aNodeThatNeverReconnectsStallsTheRunAndARetryRearmsIt() {
        ums1AcceptedButNotBack()
        #expect(advance(119).isEmpty)
        #expect(
            advance(1) == [
                .stateChanged(
                    from: .reconnecting, to: .stalled,
                    reason: "reconnect failed: ums1 (not back in normal mode within 2m)")
            ])
        #expect(machine.run.isRunning)
        #expect(machine.run.summary.hasSuffix("stalled: ums1 did not reconnect"))

        #expect(
            machine.retryRequested(now: now) == [
                .stateChanged(from: .stalled, to: .reconnecting, reason: "operator asked to retry the reconnect"),
                .callReconnect("ums1", attempt: 1, timeout: .seconds(10)),
            ])
        _ = machine.reconnectAnswered("ums1", .accepted("202"), now: now)
        #expect(
            report("ums1", .normal).contains(
                .stateChanged(from: .reconnecting, to: .completed, reason: "every server is normal on 12.07.100")))
    }

    @Test mutating func rejectedCallsAreRetriedWithBackoffThenStall() {
        _ = installEverywhere()
        #expect(machine.drainFinished("ums1", now: now) == [.callReconnect("ums1", attempt: 1, timeout: .seconds(10))])
        #expect(machine.reconnectAnswered("ums1", .rejected("HTTP 409"), now: now).isEmpty)
        #expect(advance(0.5).isEmpty)
        #expect(advance(0.5) == [.callReconnect("ums1", attempt: 2, timeout: .seconds(10))])
        #expect(machine.reconnectAnswered("ums1", .rejected("connection refused"), now: now).isEmpty)
        #expect(advance(1).isEmpty)
        #expect(advance(1) == [.callReconnect("ums1", attempt: 3, timeout: .seconds(10))])
        #expect(
            machine.reconnectAnswered("ums1", .rejected("HTTP 409"), now: now) == [
                .stateChanged(from: .reconnecting, to: .stalled, reason: "reconnect failed: ums1 (HTTP 409)")
            ])
    }

    @Test mutating func aReconnectIsNeverCalledTwiceOnceAccepted() {
        _ = installEverywhere()
        _ = machine.drainFinished("ums1", now: now)
        _ = machine.reconnectAnswered("ums1", .accepted("202"), now: now)
        for _ in 0..<100 {
            #expect(!advance(1).contains { if case .callReconnect("ums1", _, _) = $0 { true } else { false } })
        }
        #expect(machine.drainFinished("ums1", now: now).isEmpty)
    }

    @Test mutating func maintenanceNodesAreNotCountedInM() {
        nodes[2].admin = .maintenance
        _ = report("ums1", .installing)
        _ = report("ums1", .update, "12.07.100")
        #expect((machine.run.updated, machine.run.total) == (1, 2))
        let actions = report("ums2", .normal, "12.07.100")
        #expect(actions.contains(.drain("ums1")))
    }

    @Test mutating func aNewerVersionMidRunBecomesTheTargetAndAbortsTheReconnect() {
        _ = installEverywhere()
        _ = machine.drainFinished("ums1", now: now)
        let actions = report("ums3", .normal, "12.08.000")
        #expect(
            actions == [
                .targetChanged("12.08.000"), .release("ums1"), .release("ums2"),
                .stateChanged(from: .reconnecting, to: .inProgress, reason: "a newer version 12.08.000 appeared"),
            ])
        #expect(machine.run.targetVersion == "12.08.000")
        #expect((machine.run.updated, machine.run.total) == (1, 3))
    }

    @Test mutating func aCompletedRunStaysCompletedUntilTheNextInstall() {
        _ = report("ums1", .installing)
        _ = report("ums1", .normal, "12.07.100")
        _ = report("ums2", .normal, "12.07.100")
        #expect(
            report("ums3", .normal, "12.07.100").last
                == .stateChanged(from: .inProgress, to: .completed, reason: "every server is normal on 12.07.100"))
        #expect(machine.nodesObserved(nodes, now: now).isEmpty)
        nodes[1].health = .down
        #expect(report("ums2", .unknown).isEmpty)
        #expect(machine.run.state == .completed)

        #expect(
            report("ums1", .installing) == [
                .stateChanged(from: .completed, to: .inProgress, reason: "ums1 reports installing")
            ])
        #expect(machine.run.startingVersion == "12.07.100")
        #expect(machine.run.targetVersion == nil)
    }

    @Test mutating func differentVersionsAloneStartARun() {
        nodes[1].version = "12.07.100"
        let actions = machine.nodesObserved(nodes, now: now)
        #expect(
            actions == [
                .stateChanged(
                    from: .idle, to: .inProgress, reason: "servers report different versions (12.06.100, 12.07.100)"),
                .targetChanged("12.07.100"),
            ])
    }

    @Test mutating func aRestartFromPersistedStateDrainsAgainButNeverCallsTwice() throws {
        _ = installEverywhere()
        _ = machine.drainFinished("ums1", now: now)  // ums1: call in flight when the balancer dies
        let saved = try JSONEncoder().encode(machine.run)

        var restarted = UpdateRunMachine(
            run: try JSONDecoder().decode(UpdateRun.self, from: saved), settings: Self.settings)
        #expect(restarted.run.state == .reconnecting)
        #expect(restarted.resumed(now: now) == [.drain("ums1"), .drain("ums2")])
        #expect(restarted.drainFinished("ums1", now: now).isEmpty)
        #expect(
            restarted.drainFinished("ums2", now: now) == [.callReconnect("ums2", attempt: 1, timeout: .seconds(10))])
        nodes[0].mode = .normal
        nodes[1].mode = .normal
        #expect(
            restarted.nodesObserved(nodes, now: now).last
                == .stateChanged(from: .reconnecting, to: .completed, reason: "every server is normal on 12.07.100"))
    }

    @Test mutating func withoutAReconnectActionTheStepIsLeftToTheOperator() {
        machine.settings.hasReconnectAction = false
        let actions = installEverywhere()
        #expect(actions.last == .reconnectDueForOperator(["ums1", "ums2"]))
        #expect(!actions.contains(.drain("ums1")))
        #expect(machine.run.state == .reconnecting)
    }

    @Test mutating func withoutAReconnectActionARestartDrainsNothing() throws {
        // The run never drained these nodes (the operator reconnects them): a balancer restart
        // must not take both update-mode nodes out of rotation at once.
        machine.settings.hasReconnectAction = false
        _ = installEverywhere()
        var restarted = UpdateRunMachine(run: machine.run, settings: machine.settings)
        #expect(restarted.resumed(now: now).isEmpty)
        #expect(restarted.run.state == .reconnecting)
    }

    @Test mutating func withoutAReconnectActionARetryCallsNothingAndGivesTheOperatorAFreshDeadline() {
        machine.settings.hasReconnectAction = false
        _ = installEverywhere()
        _ = report("ums1", .normal)
        #expect(advance(121).last?.isStateChange(to: .stalled) == true, "ums2 missed its reconnect_timeout")
        #expect(
            machine.retryRequested(now: now) == [
                .stateChanged(from: .stalled, to: .reconnecting, reason: "operator asked to retry the reconnect"),
                .reconnectDueForOperator(["ums2"]),
            ])
        #expect(machine.run.reconnects["ums2"]?.phase == .waiting, "no reconnect call is under way")
        #expect(advance(119).isEmpty, "a fresh reconnect_timeout from the retry")
        #expect(advance(1).last?.isStateChange(to: .stalled) == true)
    }
}

extension UpdateAction {
    /// A change of the run's state to `state`.
    func isStateChange(to state: UpdateRun.State) -> Bool {
        guard case .stateChanged(_, let to, _) = self else { return false }
        return to == state
    }
}
