import BalancerCore
import Foundation

/// A driven update of four nodes (normal on 12.06.100) with the tracked run beside it, fed what the
/// coordinator feeds them: the same node reports, the run first, the drive's served-connection
/// counts, and the drive's pause holding the run's queued reconnects.
struct DriveScenario {
    static let target = "12.07.100"
    static let settings = UpdateDriveMachine.Settings(
        installTimeout: .seconds(600), installCallTimeout: .seconds(30), canaryConnections: 3,
        canaryTimeout: .seconds(300), drainTimeout: .seconds(20), drainRate: 2)

    var drive = UpdateDriveMachine(settings: settings)
    var run = UpdateRunMachine(
        settings: .init(
            drainTimeout: .seconds(10), reconnectTimeout: .seconds(120), retries: 2, hasReconnectAction: true))
    var now = RunScenarioDefaults.start
    var nodes = ["ums1", "ums2", "ums3", "ums4"].map {
        NodeStatus(id: $0, health: .up, mode: .normal, version: "12.06.100")
    }
    var served: [NodeID: Int] = [:]
    /// Connections open through the balancer to each node (none unless a test opens some).
    var open: [NodeID: Int] = [:]

    var observation: DriveObservation {
        DriveObservation(nodes: nodes, open: open, served: served, run: run.run.state)
    }

    var plan: UpdatePlan {
        UpdatePlan(
            nodes: nodes.map { UpdatePlan.Node(status: $0, connections: 10, maxConnections: 100, clockSkew: 1) },
            run: run.run, consolePolicy: .normalOnly, hasReconnectAction: true, maxUnavailable: 1)
    }

    /// `update start --version 12.07.100` by `operator`.
    mutating func start(force: Bool = false, version: String = target) throws(DriveStartRefusal) -> [DriveAction] {
        try drive.startRequested(
            version: version, plan: plan, observation: observation, withoutInstall: [], force: force,
            by: "operator", now: now)
    }

    /// The run, then the drive, observe the nodes as they stand.
    mutating func observe() -> [DriveAction] {
        run.reconnectsHeld = drive.drive?.state == .paused
        _ = run.nodesObserved(nodes, now: now)
        return drive.observed(observation, now: now)
    }

    /// `id` now reports `mode` (and `version`, `health` when given).
    mutating func report(
        _ id: NodeID, _ mode: NodeMode, _ version: String? = nil, health: NodeHealth = .up
    ) -> [DriveAction] {
        let index = nodes.firstIndex { $0.id == id }!
        nodes[index].mode = mode
        nodes[index].health = health
        if let version { nodes[index].version = version }
        return observe()
    }

    /// `id` now has `count` connections open through the balancer.
    mutating func hold(_ id: NodeID, _ count: Int) -> [DriveAction] {
        open[id] = count
        return observe()
    }

    /// `count` more device connections to `id` completed normally.
    mutating func serve(_ id: NodeID, _ count: Int) -> [DriveAction] {
        served[id, default: 0] += count
        return observe()
    }

    /// `seconds` pass; the run ticks, then the drive observes.
    mutating func advance(_ seconds: TimeInterval) -> [DriveAction] {
        now = now.addingTimeInterval(seconds)
        _ = run.tick(now: now)
        return drive.observed(observation, now: now)
    }

    /// The install call to `id` is accepted; the node installs for `seconds` and comes back on the
    /// target (in update mode, or normal when `last`). Returns what its return did.
    mutating func install(_ id: NodeID, seconds: TimeInterval = 5, last: Bool = false) -> [DriveAction] {
        _ = drive.installAnswered(id, .accepted("HTTP 202"), now: now)
        _ = report(id, .installing)
        _ = advance(seconds)
        return report(id, last ? .normal : .update, Self.target)
    }

    /// The nodes whose install the actions call.
    func calls(_ actions: [DriveAction]) -> [NodeID] {
        actions.compactMap { if case .callInstall(let node, _, _, _) = $0 { node } else { nil } }
    }

    /// The drive's state changes among the actions: "from -> to".
    func changes(_ actions: [DriveAction]) -> [String] {
        actions.compactMap { action in
            guard case .stateChanged(let from, let to, _) = action else { return nil }
            return "\(from?.rawValue ?? "-") -> \(to.rawValue)"
        }
    }

    /// The stall reasons among the actions.
    func stalls(_ actions: [DriveAction]) -> [String] {
        actions.compactMap { if case .stepStalled(_, let reason) = $0 { reason } else { nil } }
    }

    /// The step of `id`.
    func step(_ id: NodeID) -> DriveStep {
        drive.drive!.steps.first { $0.node == id }!
    }
}
