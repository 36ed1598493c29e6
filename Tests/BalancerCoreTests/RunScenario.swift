import BalancerCore
import Foundation

/// The starting point of every update-run scenario: three nodes normal on 12.06.100.
enum RunScenarioDefaults {
    /// Both update-mode nodes of a scenario reconnect at once (`max_unavailable: 2`); taking them
    /// one at a time, the default, has its own tests (`ReconnectCapacityTests`).
    static let settings = UpdateRunMachine.Settings(
        drainTimeout: .seconds(30), reconnectTimeout: .seconds(120), retries: 2, hasReconnectAction: true,
        maxUnavailable: 2)
    static let start = Date(timeIntervalSince1970: 1_800_000_000)
    static let nodes: [NodeStatus] = ["ums1", "ums2", "ums3"].map {
        NodeStatus(id: $0, health: .up, mode: .normal, version: "12.06.100")
    }
}

/// A machine, a clock and the nodes it watches, moved by what the nodes report and by time.
protocol RunScenario {
    var machine: UpdateRunMachine { get set }
    var now: Date { get set }
    var nodes: [NodeStatus] { get set }
}

extension RunScenario {
    /// `id` now reports `mode` (and `version`, when given); the machine observes every node.
    mutating func report(_ id: NodeID, _ mode: NodeMode, _ version: String? = nil) -> [UpdateAction] {
        let index = nodes.firstIndex { $0.id == id }!
        nodes[index].mode = mode
        if let version { nodes[index].version = version }
        return machine.nodesObserved(nodes, now: now)
    }

    /// `seconds` pass, then the machine ticks.
    mutating func advance(_ seconds: TimeInterval) -> [UpdateAction] {
        now = now.addingTimeInterval(seconds)
        return machine.tick(now: now)
    }

    /// Installs 12.07.100 on ums1 and ums2 (update mode) and ums3 last (normal).
    mutating func installEverywhere() -> [UpdateAction] {
        _ = report("ums1", .installing)
        _ = report("ums1", .update, "12.07.100")
        _ = report("ums2", .installing)
        _ = report("ums2", .update, "12.07.100")
        _ = report("ums3", .installing)
        return report("ums3", .normal, "12.07.100")
    }

    /// A full install, then both update-mode nodes called and accepted; ums2 is back, ums1 is not.
    mutating func ums1AcceptedButNotBack() {
        _ = installEverywhere()
        for node in ["ums1", "ums2"] {
            _ = machine.drainFinished(node, now: now)
            _ = machine.reconnectAnswered(node, .accepted("202"), now: now)
        }
        _ = report("ums2", .normal)
    }

    /// The state changes among `actions`: "from -> to: reason".
    func changes(_ actions: [UpdateAction]) -> [String] {
        actions.compactMap { action -> String? in
            guard case .stateChanged(let from, let to, let reason) = action else { return nil }
            return "\(from.rawValue) -> \(to.rawValue): \(reason)"
        }
    }

    /// The flags raised among `actions`.
    func raised(_ actions: [UpdateAction]) -> [UpdateFlag] {
        actions.compactMap { action -> UpdateFlag? in
            guard case .flagRaised(let flag, _) = action else { return nil }
            return flag
        }
    }

    /// The flags cleared among `actions`.
    func cleared(_ actions: [UpdateAction]) -> [UpdateFlag] {
        actions.compactMap { action -> UpdateFlag? in
            guard case .flagCleared(let flag, _) = action else { return nil }
            return flag
        }
    }
}
