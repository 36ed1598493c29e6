import BalancerCore
import Foundation
import Testing

/// What can go wrong in a driven update and what an operator does about it: deadlines and failed
/// installs stall it loudly, pause holds the next step, resume retries, abort stops, and a restart
/// from the persisted drive never calls an install twice.
@Suite struct UpdateDriveControlTests {
    // MARK: - Deadlines and failures

    @Test func aFailedInstallStallsTheDriveAndResumeInstallsAgain() throws {
        var scenario = DriveScenario()
        _ = try scenario.start()
        _ = scenario.drive.installAnswered("ums1", .accepted("HTTP 202"), now: scenario.now)
        _ = scenario.report("ums1", .installing)
        let failed = scenario.report("ums1", .normal, "12.06.100")
        #expect(scenario.changes(failed) == ["running -> stalled"])
        #expect(
            scenario.stalls(failed)
                == [
                    "the install failed: ums1 is back in normal mode on 12.06.100; see its installer's log, then resume"
                        + " to install it again"
                ])
        #expect(scenario.calls(scenario.advance(60)).isEmpty, "a stalled drive calls nothing by itself")
        let resumed = try scenario.drive.resumeRequested(
            by: "operator", observation: scenario.observation, now: scenario.now)
        #expect(resumed.contains(.callInstall("ums1", version: "12.07.100", attempt: 2, timeout: .seconds(30))))
        #expect(scenario.drive.drive?.state == .running && scenario.step("ums1").stalled == nil)
    }

    @Test func aRefusedInstallCallStalls() throws {
        var scenario = DriveScenario()
        _ = try scenario.start()
        let refused = scenario.drive.installAnswered(
            "ums1", .rejected("HTTP 409: already installing"), now: scenario.now)
        #expect(scenario.stalls(refused) == ["the install call to ums1 failed: HTTP 409: already installing"])
        #expect(scenario.drive.drive?.state == .stalled)
        #expect(
            scenario.drive.installAnswered("ums1", .accepted("late"), now: scenario.now).isEmpty,
            "an answer for a step no longer calling changes nothing")
    }

    @Test(arguments: [
        (
            true,
            "ums1 not back on 12.07.100 within update.install_timeout (10m) of its install call: it is still installing"
        ),
        (
            false,
            "ums1 not back on 12.07.100 within update.install_timeout (10m) of its install call: it never reported installing"
        ),
    ])
    func anInstallPastItsDeadlineStallsAndResumeWaitsForAnInstallerStillRunning(installing: Bool, expected: String)
        throws
    {
        var scenario = DriveScenario()
        _ = try scenario.start()
        _ = scenario.drive.installAnswered("ums1", .accepted("HTTP 202"), now: scenario.now)
        if installing { _ = scenario.report("ums1", .installing) }
        #expect(scenario.advance(599).isEmpty)
        let late = scenario.advance(1)
        #expect(scenario.stalls(late) == [expected])
        #expect(scenario.changes(late) == ["running -> stalled"])
        #expect(scenario.stalls(scenario.advance(60)).isEmpty, "said once")

        let resumed = try scenario.drive.resumeRequested(
            by: "operator", observation: scenario.observation, now: scenario.now)
        // Still installing: wait again (a fresh deadline); no sign of it: call again.
        #expect(scenario.calls(resumed) == (installing ? [] : ["ums1"]))
        #expect(scenario.step("ums1").deadline == scenario.now.addingTimeInterval(600))
    }

    @Test func aResumedStepWhoseNodeMustBeCalledAgainWaitsWhileAnotherServerIsOut() throws {
        var scenario = DriveScenario()
        _ = try scenario.start()
        #expect(
            scenario.changes(scenario.drive.installAnswered("ums1", .rejected("HTTP 500"), now: scenario.now))
                == ["running -> stalled"])
        // Meanwhile ums2 went down: calling ums1 again now would take a second server out.
        _ = scenario.report("ums2", .normal, health: .down)
        let resumed = try scenario.drive.resumeRequested(
            by: "operator", observation: scenario.observation, now: scenario.now)
        #expect(scenario.calls(resumed).isEmpty, "\(resumed)")
        #expect(resumed.contains(.stepWaiting("ums1", reason: "ums2 is down: one server out at a time")))
        #expect(scenario.calls(scenario.report("ums2", .normal)) == ["ums1"], "called once ums2 is back")
        #expect(scenario.step("ums1").attempts == 2)
    }

    @Test func aCanaryThatNeverPassesStallsAndUnstallsWhenDevicesArrive() throws {
        var scenario = DriveScenario()
        _ = try scenario.start()
        _ = scenario.install("ums1")
        _ = scenario.serve("ums1", 1)
        let late = scenario.advance(300)
        #expect(
            scenario.stalls(late)
                == ["ums1 served 1 of 3 device connections within update.canary_timeout (5m) of its return"])
        #expect(scenario.drive.drive?.flags == ["drive-stalled:ums1"])
        let passed = scenario.serve("ums1", 2)
        #expect(scenario.changes(passed) == ["stalled -> running"])
        #expect(scenario.calls(passed) == ["ums2"])
        #expect(scenario.drive.drive?.flags == [])
    }

    // MARK: - Pause, resume, abort

    @Test func pauseLetsTheCurrentStepFinishAndStartsNoOther() throws {
        var scenario = DriveScenario()
        _ = try scenario.start()
        _ = scenario.drive.installAnswered("ums1", .accepted("HTTP 202"), now: scenario.now)
        #expect(
            try scenario.drive.pauseRequested(by: "operator", now: scenario.now)
                == [.stateChanged(from: .running, to: .paused, reason: "paused by operator")])
        _ = scenario.report("ums1", .installing)
        _ = scenario.report("ums1", .update, "12.07.100")
        let passed = scenario.serve("ums1", 3)
        #expect(passed.contains(.stepDone("ums1", took: 0, served: 3)))
        #expect(scenario.calls(passed).isEmpty)
        #expect(throws: DriveOperatorRefusal.notApplicable(request: "pause", state: .paused)) {
            try scenario.drive.pauseRequested(by: "operator", now: scenario.now)
        }
        let resumed = try scenario.drive.resumeRequested(
            by: "operator", observation: scenario.observation, now: scenario.now)
        #expect(scenario.calls(resumed) == ["ums2"])
    }

    @Test func aPausedDriveHoldsTheReconnectQueue() throws {
        var scenario = DriveScenario()
        _ = try scenario.start()
        for node in ["ums1", "ums2", "ums3"] {
            _ = scenario.install(node)
            _ = scenario.serve(node, 3)
        }
        _ = scenario.install("ums4", last: true)
        #expect(scenario.run.run.reconnects["ums1"]?.phase == .draining)
        _ = try scenario.drive.pauseRequested(by: "operator", now: scenario.now)
        _ = scenario.run.drainFinished("ums1", now: scenario.now)
        _ = scenario.run.reconnectAnswered("ums1", .accepted("HTTP 202"), now: scenario.now)
        _ = scenario.report("ums1", .reconnecting)
        _ = scenario.report("ums1", .normal)
        #expect(scenario.run.run.reconnects["ums2"]?.phase == .queued, "the node under way finished; no next one")
        _ = try scenario.drive.resumeRequested(by: "operator", observation: scenario.observation, now: scenario.now)
        _ = scenario.observe()
        #expect(scenario.run.run.reconnects["ums2"]?.phase == .draining)
    }

    @Test func abortStopsTheDriveLeavesTheNodesAndTheRunIsStillTracked() throws {
        var scenario = DriveScenario()
        _ = try scenario.start()
        _ = scenario.install("ums1")
        _ = scenario.serve("ums1", 3)
        _ = scenario.drive.installAnswered("ums2", .accepted("HTTP 202"), now: scenario.now)
        _ = scenario.report("ums2", .installing)
        let aborted = try scenario.drive.abortRequested(by: "operator", now: scenario.now)
        #expect(
            aborted == [
                .stateChanged(from: .running, to: .aborted, reason: "aborted by operator; ums2 left installing")
            ])
        #expect(scenario.report("ums2", .update, "12.07.100").isEmpty)
        #expect(scenario.calls(scenario.advance(3600)).isEmpty)
        #expect(scenario.run.run.state == .inProgress && scenario.run.run.updated == 2)
        #expect(throws: DriveOperatorRefusal.noDrive(last: .aborted)) {
            try scenario.drive.resumeRequested(by: "operator", observation: scenario.observation, now: scenario.now)
        }
        // A new drive can start once the last one ended.
        #expect(scenario.changes(try scenario.start(force: true)) == ["- -> running"])
    }

    @Test func aStalledReconnectStallsTheDriveAndResumeRetriesIt() throws {
        var scenario = DriveScenario()
        _ = try scenario.start()
        for node in ["ums1", "ums2", "ums3"] {
            _ = scenario.install(node)
            _ = scenario.serve(node, 3)
        }
        _ = scenario.install("ums4", last: true)
        _ = scenario.run.drainFinished("ums1", now: scenario.now)
        _ = scenario.run.reconnectAnswered("ums1", .accepted("HTTP 202"), now: scenario.now)
        let stalled = scenario.advance(121)
        #expect(scenario.run.run.state == .stalled)
        #expect(scenario.changes(stalled) == ["running -> stalled"])
        #expect(scenario.drive.drive?.flags == ["drive-stalled:reconnect"])
        let resumed = try scenario.drive.resumeRequested(
            by: "operator", observation: scenario.observation, now: scenario.now)
        #expect(resumed.contains(.retryReconnect))
    }

    // MARK: - Restarts

    /// The drive as the state database gives it back.
    func persisted(_ drive: UpdateDrive?) throws -> UpdateDrive {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(UpdateDrive.self, from: try encoder.encode(try #require(drive)))
    }

    @Test func aRestartDuringTheInstallCallNeverCallsItAgain() throws {
        var scenario = DriveScenario()
        _ = try scenario.start()
        // The balancer dies with the call recorded and no answer.
        scenario.drive = UpdateDriveMachine(
            drive: try persisted(scenario.drive.drive), settings: DriveScenario.settings)
        #expect(scenario.drive.resumedAfterRestart(now: scenario.now).isEmpty)
        #expect(scenario.step("ums1").phase == .installing)
        #expect(scenario.calls(scenario.observe()).isEmpty, "ums1 has not reported installing yet: still no call")
        #expect(scenario.calls(scenario.advance(30)).isEmpty)
        _ = scenario.report("ums1", .installing)
        #expect(
            scenario.report("ums1", .update, "12.07.100").contains { if case .nodeBack = $0 { true } else { false } })
        #expect(scenario.step("ums1").attempts == 1)
    }

    @Test func aRestartDuringTheCanaryCountsAgainFromTheFirstObservation() throws {
        var scenario = DriveScenario()
        scenario.served = ["ums1": 40]
        _ = try scenario.start()
        _ = scenario.install("ums1")
        _ = scenario.serve("ums1", 2)
        scenario.drive = UpdateDriveMachine(
            drive: try persisted(scenario.drive.drive), settings: DriveScenario.settings)
        _ = scenario.drive.resumedAfterRestart(now: scenario.now)
        scenario.served = [:]  // the counts lived in the old process
        _ = scenario.observe()
        #expect(scenario.calls(scenario.serve("ums1", 2)).isEmpty)
        #expect(scenario.calls(scenario.serve("ums1", 1)) == ["ums2"])
    }

    @Test func aPausedDriveStaysPausedAfterARestart() throws {
        var scenario = DriveScenario()
        _ = try scenario.start()
        _ = scenario.install("ums1")
        _ = try scenario.drive.pauseRequested(by: "operator", now: scenario.now)
        _ = scenario.serve("ums1", 3)
        scenario.drive = UpdateDriveMachine(
            drive: try persisted(scenario.drive.drive), settings: DriveScenario.settings)
        _ = scenario.drive.resumedAfterRestart(now: scenario.now)
        #expect(scenario.calls(scenario.advance(60)).isEmpty)
        #expect(scenario.drive.drive?.state == .paused && scenario.drive.drive?.reason == "paused by operator")
    }

    // MARK: - Starting

    @Test func startIsRefusedWithAReason() throws {
        var scenario = DriveScenario()
        #expect(throws: DriveStartRefusal.invalidVersion("12.x")) { try scenario.start(version: "12.x") }
        #expect(throws: DriveStartRefusal.nothingToUpdate("every server already runs 12.06.100 in normal mode")) {
            try scenario.start(version: "12.06.100")
        }
        #expect(
            throws: DriveStartRefusal.nothingToUpdate("ums1 runs 12.06.100, higher than 12.05.1: nothing to update to")
        ) { try scenario.start(version: "12.05.1") }
        #expect(throws: DriveStartRefusal.noInstallAction(["ums3"])) {
            try scenario.drive.startRequested(
                version: DriveScenario.target, plan: scenario.plan, observation: scenario.observation,
                withoutInstall: ["ums3"], force: true, by: "operator", now: scenario.now)
        }
        _ = scenario.report("ums2", .unknown, health: .down)
        let refusal = #expect(throws: DriveStartRefusal.self) { try scenario.start() }
        #expect(refusal?.description.hasPrefix("the update plan is not ready: servers running: ums2") == true)
        #expect(scenario.drive.drive == nil)
        _ = scenario.report("ums2", .normal, health: .up)
        _ = try scenario.start()
        let underWay = #expect(throws: DriveStartRefusal.self) { try scenario.start() }
        #expect(
            underWay?.description
                == "a driven update to 12.07.100 is running: pause, resume or abort it (ums-balancer update pause|resume|abort)"
        )
    }
}
