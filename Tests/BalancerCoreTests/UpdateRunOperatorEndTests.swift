import BalancerCore
import Foundation
import Testing

/// `ums-balancer update end`: an operator closes a run by hand, unless a node is installing or
/// reconnecting; what the cluster looks like then does not start the next run by itself.
@Suite struct UpdateRunOperatorEndTests: RunScenario {
    var machine = UpdateRunMachine(settings: RunScenarioDefaults.settings)
    var now = RunScenarioDefaults.start
    var nodes = RunScenarioDefaults.nodes

    mutating func end(by actor: String = "admin-api 127.0.0.1:5000") throws(UpdateRunMachine.EndRefusal)
        -> [UpdateAction]
    {
        try machine.endRequested(by: actor, nodes: nodes, now: now)
    }

    /// A stalled run: ums1 never came back from update mode.
    mutating func stalledRun() {
        ums1AcceptedButNotBack()
        _ = advance(120)
        #expect(machine.run.state == .stalled)
    }

    @Test mutating func withoutARunUnderWayThereIsNothingToEnd() {
        #expect(throws: UpdateRunMachine.EndRefusal.noRunUnderWay(.idle)) { try end() }
        for node in ["ums1", "ums2", "ums3"] { _ = report(node, .normal, "12.07.100") }
        #expect(machine.run.state == .completed)
        #expect(throws: UpdateRunMachine.EndRefusal.noRunUnderWay(.completed)) { try end() }
        #expect(
            UpdateRunMachine.EndRefusal.noRunUnderWay(.completed).description
                == "the update run is completed: it has ended already")
    }

    @Test mutating func aNodeThatIsInstallingRefusesTheEnd() {
        _ = report("ums2", .installing)
        #expect(throws: UpdateRunMachine.EndRefusal.installing(["ums2"])) { try end() }
        #expect(
            UpdateRunMachine.EndRefusal.installing(["ums2"]).description
                == "ums2 is installing: end the run once the installer has finished (or put the node in maintenance)")
        #expect(machine.run.state == .inProgress)
    }

    @Test mutating func aNodeReconnectingOrACallInFlightRefusesTheEnd() {
        _ = installEverywhere()
        _ = machine.drainFinished("ums1", now: now)
        #expect(machine.run.reconnects["ums1"]?.phase == .calling)
        #expect(throws: UpdateRunMachine.EndRefusal.reconnecting(["ums1"])) { try end() }
        _ = machine.reconnectAnswered("ums1", .accepted("HTTP 202"), now: now)
        _ = report("ums2", .reconnecting)
        #expect(throws: UpdateRunMachine.EndRefusal.reconnecting(["ums2"])) { try end() }
        #expect(machine.run.state == .reconnecting)
    }

    @Test mutating func endingAStalledRunReleasesDrainsLiftsFreezeAndSaysWho() throws {
        stalledRun()
        now = now.addingTimeInterval(30)
        let actions = try end(by: "admin-api 127.0.0.1:5000")
        let reason =
            "ended by admin-api 127.0.0.1:5000; left as it stands: ums1 update 12.07.100, ums2 normal 12.07.100, "
            + "ums3 normal 12.07.100"
        #expect(
            actions == [
                .release("ums1"), .stateChanged(from: .stalled, to: .idle, reason: "ended-by-operator: \(reason)"),
            ])
        #expect(machine.run.state == .idle && !machine.run.isRunning)
        let last = try #require(machine.run.lastRun)
        #expect(last.outcome == .endedByOperator && last.by == "admin-api 127.0.0.1:5000" && last.at == now)
        #expect(last.reason == reason && last.targetVersion == "12.07.100" && last.startingVersion == "12.06.100")

        // The situation it was ended in starts nothing; probes keep reporting it.
        for _ in 0..<5 { #expect(machine.nodesObserved(nodes, now: now).isEmpty) }
        #expect(machine.run.state == .idle)
        // ums1 reconnected by hand: the cluster is quiet, and the acknowledgement is gone.
        #expect(report("ums1", .normal).isEmpty)
        #expect(machine.run.acknowledged == nil)
    }

    @Test(arguments: [
        ("ums3", NodeMode.installing, nil as String?, "ums3 reports installing"),
        ("ums3", .update, nil, "ums3 reports update"),
        ("ums3", .normal, "12.08.000", "servers report 12.08.000, not seen when the last run was ended"),
    ])
    mutating func anythingBeyondTheEndedSituationStartsANewRun(
        _ node: NodeID, _ mode: NodeMode, _ version: String?, _ reason: String
    ) throws {
        stalledRun()
        _ = try end()
        #expect(changes(report(node, mode, version)) == ["idle -> in-progress: \(reason)"])
        #expect(machine.run.lastRun?.outcome == .endedByOperator)
    }

    @Test mutating func endingAnOverdueRunClearsItsFlags() throws {
        _ = report("ums1", .installing)
        _ = report("ums1", .update, "12.07.100")
        _ = advance(4 * 3600)
        #expect(machine.run.flags == [.overdue])
        let actions = try end()
        #expect(actions.last == .flagCleared(.overdue, reason: "the update run ended"))
        #expect(machine.run.flags.isEmpty)
    }
}
