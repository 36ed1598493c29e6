import BalancerCore
import Foundation
import Testing

/// A restarted balancer has only the persisted run and what the nodes report: flags, the last
/// run and an operator's end must come out of those the same as before.
@Suite struct UpdateRunRestartTests: RunScenario {
    var machine = UpdateRunMachine(settings: RunScenarioDefaults.settings)
    var now = RunScenarioDefaults.start
    var nodes = RunScenarioDefaults.nodes

    /// `machine.run` through JSON, as the state database keeps it, in a new machine.
    mutating func restart() throws {
        let saved = try JSONEncoder().encode(machine.run)
        machine = UpdateRunMachine(
            run: try JSONDecoder().decode(UpdateRun.self, from: saved), settings: RunScenarioDefaults.settings)
    }

    @Test mutating func flagsAreDerivedAgainAndSaidAgainAfterARestart() throws {
        for node in ["ums1", "ums2", "ums3"] { _ = report(node, .normal, "12.06.200") }
        let earlier = try #require(machine.run.lastRun)
        _ = report("ums1", .installing)
        _ = report("ums1", .update, "12.07.100")
        _ = advance(3.5 * 3600)
        _ = report("ums2", .installing)
        _ = advance(3600)
        #expect(machine.run.flags == [.installOverdue("ums2"), .overdue])

        try restart()
        // Flags are not persisted: the restarted balancer derives them, before any probe.
        #expect(machine.run.flags.isEmpty)
        let resumed = machine.resumed(now: now)
        #expect(
            raised(resumed) == [.installOverdue("ums2"), .overdue])
        #expect(machine.run.lastRun == earlier)
        #expect(machine.run.installingSince["ums2"] == RunScenarioDefaults.start.addingTimeInterval(3.5 * 3600))
        // The first probes say the same: nothing new is said.
        #expect(machine.nodesObserved(nodes, now: now).isEmpty)
        #expect(machine.run.state == .inProgress && machine.run.startingVersion == "12.06.200")
    }

    @Test mutating func anEndedRunStaysEndedAcrossARestart() throws {
        _ = report("ums1", .installing)
        _ = report("ums1", .update, "12.07.100")
        _ = try machine.endRequested(by: "admin-api 127.0.0.1:5000", nodes: nodes, now: now)
        try restart()
        #expect(machine.resumed(now: now).isEmpty)
        #expect(machine.nodesObserved(nodes, now: now).isEmpty)
        #expect(machine.run.state == .idle)
        #expect(machine.run.lastRun?.outcome == .endedByOperator)
        #expect(machine.run.lastRun?.by == "admin-api 127.0.0.1:5000")
    }

    @Test mutating func aPersistedRunThatNoLongerMatchesTheNodesEndsAtTheFirstProbe() throws {
        _ = report("ums2", .installing)
        try restart()
        _ = machine.resumed(now: now)
        // While the balancer was down, ums2's repair install finished.
        now = now.addingTimeInterval(600)
        let actions = report("ums2", .normal)
        #expect(
            changes(actions) == [
                "in-progress -> idle: no-version-change: every server is normal on 12.06.100; none reached a higher version"
            ])
        #expect(machine.run.lastRun?.at == now)
    }

    @Test func aRunSavedBeforeFlagsAndLastRunExistedStillLoads() throws {
        let saved = Data(
            """
            {"state":"reconnecting","startingVersion":"12.06.100","targetVersion":"12.07.100","updated":3,"total":3,
             "startedAt":800000000,"reconnectStartedAt":800000100,
             "reconnects":{"ums1":{"phase":"waiting","drainStartedAt":800000100,"attempts":1,"deadline":800000220}}}
            """.utf8)
        let run = try JSONDecoder().decode(UpdateRun.self, from: saved)
        #expect(run.state == .reconnecting && run.targetVersion == "12.07.100" && run.reconnects["ums1"]?.attempts == 1)
        #expect(run.lastRun == nil && run.installingSince.isEmpty && run.acknowledged == nil && run.flags.isEmpty)
    }
}
