import BalancerCore
import Foundation
import Testing

/// Every way a run starts and ends, from what the nodes report: no path leaves a run behind.
@Suite struct UpdateRunEndingTests: RunScenario {
    var machine = UpdateRunMachine(settings: RunScenarioDefaults.settings)
    var now = RunScenarioDefaults.start
    var nodes = RunScenarioDefaults.nodes

    /// One thing that happens to the cluster.
    enum Step: Sendable {
        /// The node is up and reports this mode (and version).
        case reports(NodeID, NodeMode, String? = nil)
        /// The node's probes fail: down, mode unknown.
        case down(NodeID)
        /// The operator puts the node in maintenance.
        case maintenance(NodeID)
    }

    /// A path through a run, and where it must stand at its end.
    struct Path: Sendable, CustomTestStringConvertible {
        var name: String
        var steps: [Step]
        var state: UpdateRun.State
        var outcome: UpdateRunEnding.Outcome?
        var reason: String?

        var testDescription: String { name }
    }

    static let sameVersion = "every server is normal on 12.06.100; none reached a higher version"

    static let paths: [Path] = [
        Path(
            name: "a same-version reinstall (repair install) ends as no-version-change",
            steps: [.reports("ums2", .installing), .reports("ums2", .normal, "12.06.100")],
            state: .idle, outcome: .noVersionChange, reason: sameVersion),
        Path(
            name: "a mode override to update, then cleared, ends as no-version-change",
            steps: [.reports("ums2", .update), .reports("ums2", .normal)],
            state: .idle, outcome: .noVersionChange, reason: sameVersion),
        Path(
            name: "a status reporting installing once (flapping) ends as no-version-change",
            steps: [.reports("ums3", .installing), .reports("ums3", .normal)],
            state: .idle, outcome: .noVersionChange, reason: sameVersion),
        Path(
            name: "an aborted installer, down and back on the old version, ends as no-version-change",
            steps: [.reports("ums1", .installing), .down("ums1"), .reports("ums1", .normal)],
            state: .idle, outcome: .noVersionChange, reason: sameVersion),
        Path(
            name: "a failed install that leaves the node down holds the run",
            steps: [.reports("ums1", .installing), .down("ums1")],
            state: .inProgress),
        Path(
            name: "a failed install ends once the operator puts the lost node in maintenance",
            steps: [.reports("ums1", .installing), .down("ums1"), .maintenance("ums1")],
            state: .idle, outcome: .noVersionChange, reason: sameVersion),
        Path(
            name: "a node taken back to the old version after reaching the target ends as rolled-back",
            steps: [
                .reports("ums1", .installing), .reports("ums1", .update, "12.07.100"), .reports("ums1", .installing),
                .reports("ums1", .normal, "12.06.100"),
            ],
            state: .idle, outcome: .rolledBack,
            reason: "every server is normal on 12.06.100, below the target 12.07.100"),
        Path(
            name: "a node installed out of band and taken back ends as rolled-back",
            steps: [.reports("ums2", .normal, "12.07.100"), .reports("ums2", .normal, "12.06.100")],
            state: .idle, outcome: .rolledBack,
            reason: "every server is normal on 12.06.100, below the target 12.07.100"),
        Path(
            name: "a node in update mode on the target holds the run",
            steps: [.reports("ums1", .installing), .reports("ums1", .update, "12.07.100")],
            state: .inProgress),
        Path(
            name: "a rolling update through update mode and the reconnect ends completed",
            steps: [
                .reports("ums1", .installing), .reports("ums1", .update, "12.07.100"), .reports("ums2", .installing),
                .reports("ums2", .update, "12.07.100"), .reports("ums3", .installing),
                .reports("ums3", .normal, "12.07.100"), .reports("ums1", .normal), .reports("ums2", .normal),
            ],
            state: .completed, outcome: .completed, reason: "every server is normal on 12.07.100"),
        Path(
            name: "servers that all come up normal on the new version end completed",
            steps: [
                .reports("ums1", .normal, "12.07.100"), .reports("ums2", .normal, "12.07.100"),
                .reports("ums3", .normal, "12.07.100"),
            ],
            state: .completed, outcome: .completed, reason: "every server is normal on 12.07.100"),
    ]

    mutating func apply(_ step: Step) -> [UpdateAction] {
        switch step {
        case .reports(let id, let mode, let version):
            nodes[nodes.firstIndex { $0.id == id }!].health = .up
            return report(id, mode, version)
        case .down(let id):
            nodes[nodes.firstIndex { $0.id == id }!].health = .down
            return report(id, .unknown)
        case .maintenance(let id):
            nodes[nodes.firstIndex { $0.id == id }!].admin = .maintenance
            return machine.nodesObserved(nodes, now: now)
        }
    }

    @Test(arguments: paths)
    mutating func everyPathEndsWhereTheRulesSay(_ path: Path) {
        var actions: [UpdateAction] = []
        for step in path.steps {
            now = now.addingTimeInterval(1)
            actions += apply(step)
        }
        #expect(machine.run.state == path.state)
        #expect(changes(actions).first?.hasPrefix("idle -> in-progress") == true)
        // Freeze follows isRunning: it stops applying the moment the run ends.
        #expect(machine.run.isRunning == [.inProgress, .reconnecting, .stalled].contains(path.state))
        #expect(machine.run.lastRun?.outcome == path.outcome)
        #expect(machine.run.lastRun?.reason == path.reason)
        if let outcome = path.outcome {
            #expect(machine.run.lastRun?.at == now)
            #expect(machine.run.lastRun?.startingVersion == "12.06.100")
            #expect(machine.run.lastRun?.startedAt == RunScenarioDefaults.start.addingTimeInterval(1))
            let to = outcome == .completed ? "completed" : "idle"
            let reason = outcome == .completed ? path.reason ?? "" : "\(outcome.rawValue): \(path.reason ?? "")"
            #expect(changes(actions).last?.hasSuffix("-> \(to): \(reason)") == true, "\(changes(actions))")
        }
        if path.state == .idle {
            #expect(machine.run.targetVersion == nil && machine.run.startedAt == nil && machine.run.reconnects.isEmpty)
            #expect(machine.run.summary.hasPrefix("no update running; the last run ended \(path.outcome!.rawValue)"))
            // Nothing is left to end it later: the same observation again changes nothing.
            #expect(machine.nodesObserved(nodes, now: now).isEmpty)
        }
    }

    @Test mutating func aFlappingStatusStartsAndEndsOneShortRunPerFlapAndLeavesNone() {
        var started = 0
        for _ in 0..<3 {
            now = now.addingTimeInterval(2)
            started += changes(report("ums2", .installing)).filter { $0.hasPrefix("idle -> in-progress") }.count
            #expect(machine.run.isRunning)
            now = now.addingTimeInterval(2)
            #expect(changes(report("ums2", .normal)) == ["in-progress -> idle: no-version-change: \(Self.sameVersion)"])
            #expect(machine.run.state == .idle && machine.run.lastRun?.at == now)
        }
        #expect(started == 3)
    }

    @Test mutating func endingARunReleasesTheReconnectDrainsItHeld() {
        _ = installEverywhere()
        #expect(machine.run.state == .reconnecting)
        // The final server is taken back and every other one leaves update mode on the old version.
        _ = report("ums3", .installing)
        _ = report("ums3", .normal, "12.06.100")
        _ = report("ums1", .normal, "12.06.100")
        let actions = report("ums2", .normal, "12.06.100")
        #expect(
            actions.filter { if case .release = $0 { true } else { false } } == [.release("ums1"), .release("ums2")])
        #expect(machine.run.state == .idle)
        #expect(machine.run.lastRun?.outcome == .rolledBack)
    }

    @Test mutating func aCompletedRunStaysUntilAnotherVersionOrAnInstallThenANewRunKeepsLastRun() {
        for node in ["ums1", "ums2", "ums3"] { _ = report(node, .normal, "12.07.100") }
        #expect(machine.run.state == .completed)
        #expect(machine.run.lastRun?.outcome == .completed)
        // A mode override (or a node in update mode) on the target version starts nothing.
        #expect(report("ums2", .update).isEmpty)
        #expect(report("ums2", .normal).isEmpty)
        #expect(machine.run.state == .completed)

        let completed = machine.run.lastRun
        now = now.addingTimeInterval(60)
        #expect(
            changes(report("ums1", .installing)) == ["completed -> in-progress: ums1 reports installing"])
        #expect(machine.run.startingVersion == "12.07.100")
        #expect(machine.run.lastRun == completed)
        // A repair install of the version just completed.
        #expect(
            changes(report("ums1", .normal))
                == [
                    "in-progress -> idle: no-version-change: every server is normal on 12.07.100; none reached a higher version"
                ])
        #expect(machine.run.state == .idle)
    }
}
