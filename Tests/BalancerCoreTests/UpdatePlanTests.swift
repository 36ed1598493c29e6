import BalancerCore
import Foundation
import Testing

/// The pre-flight report: each check passes, warns or fails with what to do; ready only without a fail.
@Suite struct UpdatePlanTests {
    func node(
        _ id: NodeID, _ mode: NodeMode = .normal, version: String = "12.06.100", health: NodeHealth = .up,
        connections: Int = 100, max: Int? = 400, skew: TimeInterval? = 2
    ) -> UpdatePlan.Node {
        UpdatePlan.Node(
            status: NodeStatus(id: id, health: health, mode: mode, version: version), connections: connections,
            maxConnections: max, clockSkew: skew)
    }

    func plan(_ nodes: [UpdatePlan.Node], run: UpdateRun = UpdateRun(), console: ConsolePolicy = .normalOnly)
        -> UpdatePlan
    {
        UpdatePlan(nodes: nodes, run: run, consolePolicy: console, hasReconnectAction: true, maxUnavailable: 1)
    }

    func result(_ plan: UpdatePlan, _ name: String) -> UpdatePlan.Result? {
        plan.checks.first { $0.name == name }?.result
    }

    @Test func aHealthyClusterIsReadyAndSaysTheOrder() {
        let ready = plan([node("ums1"), node("ums2"), node("ums3")])
        #expect(ready.ready)
        #expect(ready.order == ["ums1", "ums2", "ums3"])
        #expect(ready.checks.allSatisfy { $0.result == .pass }, "\(ready.checks)")
        #expect(
            ready.checks.first { $0.name == "order" }?.detail
                == "ums1, ums2 (each in update mode on a local copy), then ums3 last (renews the productive schema)")
        #expect(
            ready.checks.first { $0.name == "capacity" }?.detail
                == "with ums1 (the busiest) out, the others take 800 of the 300 connections now")
    }

    @Test func anOrphanedServerFailsThePlan() {
        let orphan = plan([node("ums1"), node("ums2"), node("ums3", .unknown, health: .down)])
        #expect(!orphan.ready)
        #expect(result(orphan, "servers running") == .fail)
        #expect(
            orphan.checks.first { $0.name == "servers running" }?.detail.hasPrefix("ums3 configured but not answering")
                == true)
    }

    @Test func mixedVersionsAModeOtherThanNormalOrARunFail() {
        #expect(result(plan([node("ums1"), node("ums2", version: "12.07.100")]), "one version") == .fail)
        #expect(result(plan([node("ums1"), node("ums2", .update)]), "normal mode") == .fail)
        var run = UpdateRun()
        run.state = .inProgress
        #expect(result(plan([node("ums1"), node("ums2")], run: run), "update run") == .fail)
    }

    @Test func clocksMoreThanAMinuteOffFailAndUnknownOnesWarn() {
        let skewed = plan([node("ums1"), node("ums2", skew: -75)])
        #expect(result(skewed, "clocks") == .fail)
        #expect(skewed.checks.first { $0.name == "clocks" }?.detail.hasPrefix("ums2 -75 s off") == true)
        let unknown = plan([node("ums1"), node("ums2", skew: nil)])
        #expect(result(unknown, "clocks") == .warn)
        #expect(unknown.ready)
    }

    @Test func capacityWithTheBusiestServerOut() {
        let tight = plan([node("ums1", connections: 500, max: 600), node("ums2", connections: 300, max: 600)])
        #expect(result(tight, "capacity") == .fail, "800 connections, 600 left with ums1 out")
        let unlimited = plan([node("ums1"), node("ums2", max: nil)])
        #expect(result(unlimited, "capacity") == .warn)
    }

    @Test func theConsolePolicyAllowWarns() {
        #expect(result(plan([node("ums1"), node("ums2")], console: .allow), "console") == .warn)
    }
}
