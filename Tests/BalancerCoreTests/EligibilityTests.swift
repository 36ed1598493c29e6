import BalancerCore
import Testing

/// Every combination of mode, health, admin state, class, console policy and update state,
/// checked against the rules of PRODUCT.md written out independently of `Eligibility`.
@Suite struct EligibilityTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var mode: NodeMode
        var health: NodeHealth
        var admin: AdminState
        var trafficClass: TrafficClass
        var policy: ConsolePolicy
        var updateRunning: Bool
        var reconnectDrain: Bool

        var testDescription: String {
            "\(trafficClass) \(mode) \(health) \(admin)\(reconnectDrain ? " reconnect-drained" : "") \(policy.rawValue)"
                + (updateRunning ? " during update" : "")
        }
    }

    static let allCases: [Case] = NodeMode.allCases.flatMap { mode in
        NodeHealth.allCases.flatMap { health in
            AdminState.allCases.flatMap { admin in
                TrafficClass.allCases.flatMap { trafficClass in
                    ConsolePolicy.allCases.flatMap { policy in
                        [false, true].flatMap { updateRunning in
                            [false, true].map {
                                Case(
                                    mode: mode, health: health, admin: admin, trafficClass: trafficClass,
                                    policy: policy, updateRunning: updateRunning, reconnectDrain: $0)
                            }
                        }
                    }
                }
            }
        }
    }

    /// The rules, stated as the sets of states that may serve each class.
    static func expected(_ c: Case) -> Bool {
        guard c.health == .up, c.admin == .active, !c.reconnectDrain else { return false }
        switch c.trafficClass {
        case .device:
            return [.normal, .update].contains(c.mode)
        case .console:
            switch c.policy {
            case .normalOnly: return c.mode == .normal
            case .freeze: return c.mode == .normal && !c.updateRunning
            case .allow: return [.normal, .update].contains(c.mode)
            }
        }
    }

    @Test func theTableHasEveryCombination() {
        #expect(Self.allCases.count == 5 * 2 * 3 * 2 * 3 * 2 * 2)
    }

    @Test(arguments: allCases)
    func eligibilityFollowsTheRules(_ c: Case) {
        var node = NodeStatus(id: "ums1", health: c.health, mode: c.mode, admin: c.admin)
        node.reconnectDrain = c.reconnectDrain
        let eligible = Eligibility.isEligible(
            node, for: c.trafficClass, consolePolicy: c.policy, updateRunning: c.updateRunning)
        #expect(eligible == Self.expected(c))
    }

    @Test func aFailedProbeWinsOverAnOptimisticMode() {
        let node = NodeStatus(id: "ums1", health: .down, mode: .normal, admin: .active)
        #expect(Eligibility.reason(node, for: .device) == .down)
    }

    @Test func reasonsNameWhatAnOperatorWouldLookFor() {
        let update = NodeStatus(id: "ums1", health: .up, mode: .update)
        #expect(Eligibility.reason(update, for: .console)?.description == "update")
        let drained = NodeStatus(id: "ums1", health: .up, mode: .normal, admin: .draining)
        #expect(Eligibility.reason(drained, for: .device)?.description == "draining")
        let normal = NodeStatus(id: "ums1", health: .up, mode: .normal)
        #expect(
            Eligibility.reason(normal, for: .console, consolePolicy: .freeze, updateRunning: true)?.description
                == "console frozen during update")
    }
}
