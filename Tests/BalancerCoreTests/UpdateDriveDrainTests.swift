import BalancerCore
import Foundation
import Testing

/// A driven update drains each node before its install: no new connections, the open ones finish
/// (until `update.drain_timeout`; with `update.drain_rate` the balancer then closes the rest at that
/// pace), and only then is the installer called, so no device request is cut by an installer
/// stopping the server under it.
@Suite struct UpdateDriveDrainTests {
    @Test func aNodeWithOpenConnectionsIsInstalledOnlyOnceTheyHaveClosed() throws {
        var scenario = DriveScenario()
        scenario.open["ums1"] = 3
        let started = try scenario.start()
        #expect(started.contains(.drainingForInstall("ums1", connections: 3, timeout: .seconds(20))))
        #expect(scenario.calls(started).isEmpty, "no install while connections are open")
        #expect(scenario.step("ums1").phase == .draining)
        #expect(scenario.drive.drive?.installDrain == "ums1")
        #expect(scenario.drive.drive?.summary == "driving 12.07.100: 0 of 4 servers done, ums1 draining, next ums2")

        #expect(scenario.calls(scenario.hold("ums1", 1)).isEmpty)
        #expect(scenario.calls(scenario.advance(19)).isEmpty, "within update.drain_timeout nothing is closed")
        #expect(scenario.calls(scenario.hold("ums1", 0)) == ["ums1"], "the last close calls the install")
        #expect(scenario.step("ums1").phase == .calling)
        #expect(scenario.drive.drive?.installDrain == "ums1", "held out until it is back")
    }

    @Test func aNodeWithNothingOpenIsCalledAtOnce() throws {
        var scenario = DriveScenario()
        scenario.open["ums2"] = 5
        let started = try scenario.start()
        #expect(scenario.calls(started) == ["ums1"])
        #expect(!started.contains { if case .drainingForInstall = $0 { true } else { false } })
    }

    @Test func pastItsTimeoutTheDrainClosesWhatIsLeftAtTheRateThenCalls() throws {
        var scenario = DriveScenario()
        scenario.open["ums1"] = 4
        _ = try scenario.start()
        let timedOut = scenario.advance(20)
        #expect(timedOut == [.closeForInstall("ums1", connections: 4, perSecond: 2)])
        #expect(scenario.advance(1).isEmpty, "closed once, not per observation")
        #expect(scenario.calls(scenario.hold("ums1", 0)) == ["ums1"])
    }

    @Test func withoutADrainRateTheInstallIsCalledAtTheTimeoutAndTheNodeClosesWhatIsLeft() throws {
        var scenario = DriveScenario()
        scenario.drive.settings.drainRate = nil
        scenario.open["ums1"] = 4
        _ = try scenario.start()
        #expect(scenario.calls(scenario.advance(19.9)).isEmpty)
        let timedOut = scenario.advance(0.1)
        #expect(scenario.calls(timedOut) == ["ums1"])
        #expect(!timedOut.contains { if case .closeForInstall = $0 { true } else { false } })
    }

    @Test func aCountThatNeverReachesZeroHoldsTheInstallOnlyAsLongAsThePacedCloseTakes() throws {
        var scenario = DriveScenario()
        scenario.open["ums1"] = 4
        _ = try scenario.start()
        #expect(scenario.advance(20) == [.closeForInstall("ums1", connections: 4, perSecond: 2)])
        // 4 connections at 2 per second: 2 s, and 10 s of grace for the closes to be counted.
        #expect(scenario.calls(scenario.advance(11.9)).isEmpty)
        #expect(scenario.calls(scenario.advance(0.1)) == ["ums1"])
    }

    @Test func anotherServerGoingOutDuringTheDrainLiftsItUntilThatOneIsBack() throws {
        var scenario = DriveScenario()
        scenario.open["ums1"] = 2
        _ = try scenario.start()
        let down = scenario.report("ums3", .normal, health: .down)
        #expect(down == [.stepWaiting("ums1", reason: "ums3 is down: one server out at a time")])
        #expect(scenario.step("ums1").phase == .pending)
        #expect(scenario.drive.drive?.installDrain == nil, "two servers must not be out at once: ums1 serves again")
        let back = scenario.report("ums3", .normal)
        #expect(back.contains(.drainingForInstall("ums1", connections: 2, timeout: .seconds(20))))
        #expect(scenario.drive.drive?.installDrain == "ums1")
    }

    @Test func pauseBeforeTheInstallCallLiftsTheDrainAndResumeDrainsAgain() throws {
        var scenario = DriveScenario()
        scenario.open["ums1"] = 2
        _ = try scenario.start()
        let paused = try scenario.drive.pauseRequested(by: "operator", now: scenario.now)
        #expect(
            paused == [
                .stateChanged(
                    from: .running, to: .paused,
                    reason: "paused by operator; ums1 takes connections again until resumed (not installed yet)")
            ])
        #expect(scenario.drive.drive?.installDrain == nil)
        #expect(scenario.calls(scenario.hold("ums1", 0)).isEmpty, "paused: drained or not, no install")
        scenario.open["ums1"] = 1
        let resumed = try scenario.drive.resumeRequested(
            by: "operator", observation: scenario.observation, now: scenario.now)
        #expect(resumed.contains(.drainingForInstall("ums1", connections: 1, timeout: .seconds(20))))
        #expect(scenario.drive.drive?.installDrain == "ums1")
    }

    @Test func aRestartDuringTheDrainStartsItAgain() throws {
        var scenario = DriveScenario()
        scenario.open["ums1"] = 2
        _ = try scenario.start()
        _ = scenario.advance(20)
        scenario.drive = UpdateDriveMachine(drive: scenario.drive.drive, settings: DriveScenario.settings)
        #expect(scenario.drive.resumedAfterRestart(now: scenario.now).isEmpty)
        let again = scenario.observe()
        #expect(again == [.drainingForInstall("ums1", connections: 2, timeout: .seconds(20))])
        #expect(scenario.calls(scenario.advance(19)).isEmpty, "a fresh drain_timeout")
    }

    @Test func theDrainHoldsUntilTheNodeIsBackAndIsLiftedWhileItsStepIsStalled() throws {
        var scenario = DriveScenario()
        _ = try scenario.start()
        #expect(scenario.drive.drive?.installDrain == "ums1")
        _ = scenario.drive.installAnswered("ums1", .accepted("HTTP 202"), now: scenario.now)
        _ = scenario.report("ums1", .installing)
        #expect(scenario.drive.drive?.installDrain == "ums1")
        _ = scenario.report("ums1", .update, DriveScenario.target)
        #expect(scenario.step("ums1").phase == .canary)
        #expect(scenario.drive.drive?.installDrain == nil, "back: it must serve devices to pass its canary")

        _ = scenario.serve("ums1", 3)
        #expect(scenario.drive.drive?.installDrain == "ums2")
        _ = scenario.drive.installAnswered("ums2", .rejected("HTTP 500"), now: scenario.now)
        #expect(scenario.drive.drive?.state == .stalled)
        #expect(scenario.drive.drive?.installDrain == nil, "stalled: it serves until an operator resumes")
        _ = try scenario.drive.abortRequested(by: "operator", now: scenario.now)
        #expect(scenario.drive.drive?.installDrain == nil)
    }
}
