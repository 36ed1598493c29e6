import BalancerCore
import Foundation
import Testing

/// The driven update, node by node: the plan's order, one install call each, the canary gate, the
/// last node back normal, then the tracked run's reconnect; the drive completes with the run.
@Suite struct UpdateDriveMachineTests {
    @Test func startCallsTheFirstNodesInstallAndNothingElse() throws {
        var scenario = DriveScenario()
        let actions = try scenario.start()
        #expect(
            actions == [
                .stateChanged(
                    from: nil, to: .running, reason: "started by operator: ums1 -> ums2 -> ums3 -> ums4 to 12.07.100"),
                .callInstall("ums1", version: "12.07.100", attempt: 1, timeout: .seconds(30)),
            ])
        #expect(scenario.step("ums1").phase == .calling, "recorded before the call is made")
        #expect(scenario.drive.drive?.order == ["ums1", "ums2", "ums3", "ums4"])
        #expect(scenario.calls(scenario.observe()).isEmpty, "never called twice")
    }

    @Test func theNextNodeStartsOnlyOnceTheReturningNodeHasServedDevices() throws {
        var scenario = DriveScenario()
        _ = try scenario.start()
        let back = scenario.install("ums1", seconds: 5)
        #expect(back == [.nodeBack("ums1", mode: .update, after: 5, canary: 3)])
        #expect(scenario.step("ums1").phase == .canary)
        #expect(scenario.calls(scenario.advance(60)).isEmpty, "back in update mode is not enough")
        #expect(scenario.calls(scenario.serve("ums2", 50)).isEmpty, "other nodes' traffic does not count")
        #expect(scenario.calls(scenario.serve("ums1", 2)).isEmpty)
        #expect(scenario.step("ums1").canaryServed == 2)
        let passed = scenario.serve("ums1", 1)
        #expect(
            passed == [
                .stepDone("ums1", took: 65, served: 3),
                .callInstall("ums2", version: "12.07.100", attempt: 1, timeout: .seconds(30)),
            ])
    }

    @Test func aWholeDriveFollowsThePlanAndCompletesWithTheReconnect() throws {
        var scenario = DriveScenario()
        var called = scenario.calls(try scenario.start())
        for node in ["ums1", "ums2", "ums3"] {
            _ = scenario.install(node)
            called += scenario.calls(scenario.serve(node, 3))
        }
        #expect(called == ["ums1", "ums2", "ums3", "ums4"])
        #expect(scenario.drive.drive?.summary == "driving 12.07.100: 3 of 4 servers done, ums4 calling")
        let last = scenario.install("ums4", last: true)
        #expect(last.contains(.nodeBack("ums4", mode: .normal, after: 5, canary: 0)), "the last has no canary gate")
        #expect(last.contains(.stepDone("ums4", took: 5, served: 0)))
        #expect(last.contains(.reconnectStageStarted))
        #expect(scenario.run.run.state == .reconnecting)
        #expect(scenario.drive.drive?.state == .running)

        // The tracked run reconnects ums1, ums2, ums3 one at a time; the drive waits for it.
        for node in ["ums1", "ums2", "ums3"] {
            _ = scenario.run.drainFinished(node, now: scenario.now)
            _ = scenario.run.reconnectAnswered(node, .accepted("HTTP 202"), now: scenario.now)
            #expect(scenario.report(node, .reconnecting).isEmpty)
            let back = scenario.report(node, .normal)
            #expect(scenario.changes(back) == (node == "ums3" ? ["running -> completed"] : []))
        }
        let drive = try #require(scenario.drive.drive)
        #expect(drive.state == .completed && drive.reconnect?.finishedAt == scenario.now)
        #expect(drive.steps.allSatisfy { $0.phase == .done && $0.attempts == 1 })
        #expect(scenario.calls(scenario.advance(600)).isEmpty)
    }

    @Test func theLastNodeMustComeBackNormal() throws {
        var scenario = DriveScenario()
        _ = try scenario.start()
        for node in ["ums1", "ums2", "ums3"] {
            _ = scenario.install(node)
            _ = scenario.serve(node, 3)
        }
        _ = scenario.drive.installAnswered("ums4", .accepted("HTTP 202"), now: scenario.now)
        _ = scenario.report("ums4", .installing)
        let back = scenario.report("ums4", .update, "12.07.100")
        #expect(scenario.changes(back) == ["running -> stalled"])
        #expect(scenario.stalls(back).first?.hasPrefix("ums4, the last server, came back in update mode") == true)
        #expect(scenario.drive.drive?.flags == ["drive-stalled:ums4"])
    }

    @Test func theNextStepWaitsWhileAnotherServerIsOutAndSaysSoOnce() throws {
        var scenario = DriveScenario()
        _ = try scenario.start()
        _ = scenario.install("ums1")
        _ = scenario.report("ums3", .unknown, health: .down)
        let passed = scenario.serve("ums1", 3)
        #expect(passed.contains(.stepWaiting("ums2", reason: "ums3 is down: one server out at a time")))
        #expect(scenario.calls(passed).isEmpty)
        #expect(scenario.advance(1).isEmpty, "said once, not per tick")
        #expect(scenario.calls(scenario.report("ums3", .normal, health: .up)) == ["ums2"])
    }

    @Test func aNodeAlreadyOnTheTargetIsNotInstalledAgain() throws {
        var scenario = DriveScenario()
        _ = scenario.report("ums1", .installing)
        _ = scenario.report("ums1", .update, "12.07.100")
        // The plan fails (a run is under way, two versions): started with --force.
        let actions = try scenario.start(force: true)
        #expect(actions.contains(.installSkipped("ums1", mode: .update)))
        #expect(scenario.calls(actions).isEmpty)
        #expect(scenario.drive.drive?.forced == true)
        #expect(scenario.calls(scenario.serve("ums1", 3)) == ["ums2"])
    }

    @Test func theEstimateIsTheAverageStepTimesTheStepsLeft() throws {
        var scenario = DriveScenario()
        _ = try scenario.start()
        #expect(scenario.drive.drive?.estimatedRemaining(now: scenario.now) == nil, "nothing to judge by yet")
        _ = scenario.install("ums1", seconds: 6)
        _ = scenario.advance(4)
        _ = scenario.serve("ums1", 3)
        _ = scenario.advance(4)
        // One step took 10 s; ums2 has run 4 s: 6 s left of it, then ums3 and ums4.
        #expect(scenario.drive.drive?.estimatedRemaining(now: scenario.now) == 26)
    }
}
