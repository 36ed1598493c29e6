import BalancerCore
import Testing

@Suite struct RoutingTableTests {
    func table(_ states: [(NodeID, NodeHealth, NodeMode)]) -> RoutingTable {
        RoutingTable(nodes: states.map { NodeStatus(id: $0.0, health: $0.1, mode: $0.2) })
    }

    @Test func deviceConnectionsGoToTheNodeWithFewestConnections() {
        var routing = table([("ums1", .up, .normal), ("ums2", .up, .normal), ("ums3", .up, .normal)])
        var chosen: [NodeID: Int] = [:]
        for _ in 0..<99 {
            guard case .tryNodes(let order) = routing.route(.device, algorithm: .leastConnections, clientKey: "c")
            else {
                Issue.record("refused")
                return
            }
            routing.connectionOpened(to: order[0])
            chosen[order[0], default: 0] += 1
        }
        #expect(chosen == ["ums1": 33, "ums2": 33, "ums3": 33])
        #expect(routing.connections(to: "ums2") == 33)
    }

    @Test func aSlowStartingNodeTakesAGrowingShareOfNewConnections() {
        var routing = table([("ums1", .up, .normal), ("ums2", .up, .normal)])
        let start = ContinuousClock.now
        routing.slowStart("ums2", over: .seconds(10), now: start)
        func share(at offset: Duration) -> Int {
            var copy = routing
            var chosen = 0
            for _ in 0..<100 {
                guard
                    case .tryNodes(let order) = copy.route(
                        .device, algorithm: .leastConnections, clientKey: "c", now: start + offset)
                else { return -1 }
                copy.connectionOpened(to: order[0])
                if order[0] == "ums2" { chosen += 1 }
            }
            return chosen
        }
        #expect(share(at: .zero) < 15)
        #expect((40...60).contains(share(at: .seconds(11))))
        #expect(share(at: .seconds(2)) < share(at: .seconds(6)))
    }

    @Test func closedConnectionsAreReleased() {
        var routing = table([("ums1", .up, .normal)])
        routing.connectionOpened(to: "ums1")
        routing.connectionOpened(to: "ums1")
        routing.connectionClosed(from: "ums1")
        #expect(routing.connections(to: "ums1") == 1)
        routing.connectionClosed(from: "ums1")
        routing.connectionClosed(from: "ums1")
        #expect(routing.connections(to: "ums1") == 0)
    }

    @Test func downNodesAreNotTried() {
        var routing = table([("ums1", .down, .normal), ("ums2", .up, .normal)])
        #expect(routing.route(.device, algorithm: .roundRobin, clientKey: "c") == .tryNodes(["ums2"]))
    }

    @Test func refusalNamesEveryNodeAndWhy() {
        var routing = table([("ums1", .up, .update), ("ums2", .up, .installing), ("ums3", .down, .normal)])
        guard case .refuse(let refusal) = routing.route(.console, algorithm: .source, clientKey: "c") else {
            Issue.record("expected a refusal")
            return
        }
        #expect(refusal.description == "console refused: ums1 update, ums2 installing, ums3 down")
    }

    @Test func replacingNodesKeepsTheStateOfNodesThatStay() {
        var routing = table([("ums1", .up, .update), ("ums2", .down, .normal)])
        routing.apply(.adminStateSet(.draining), to: "ums1")
        routing.replaceNodes(with: [
            NodeRecord(id: "ums1"), NodeRecord(id: "ums3", observation: NodeObservation(health: .up, mode: .normal)),
        ])
        #expect(routing.nodes.map(\.id) == ["ums1", "ums3"])
        #expect(routing.status(of: "ums1") == NodeStatus(id: "ums1", health: .up, mode: .update, admin: .draining))
    }

    @Test func aReaddressedNodeForgetsWhatWasProbedButKeepsItsDrainsAndOverride() {
        var routing = table([("ums1", .up, .update), ("ums2", .up, .normal)])
        routing.apply(.reconnectDrainSet(true), to: "ums1")
        routing.apply(.adminStateSet(.draining), to: "ums2")
        routing.apply(.modeOverridden(.normal), to: "ums2")
        routing.replaceNodes(
            with: [NodeRecord(id: "ums1"), NodeRecord(id: "ums2")], readdressed: ["ums1", "ums2"])
        let ums1 = routing.status(of: "ums1")
        #expect(ums1?.health == .down && ums1?.mode == .unknown)
        #expect(ums1?.reconnectDrain == true, "the run's drain must not be lifted by an address change")
        #expect(routing.status(of: "ums2")?.admin == .draining)
        #expect(routing.status(of: "ums2")?.mode == .normal)
    }

    @Test func aNodeDrainedForItsInstallTakesNoNewConnectionOfAnyClassUntilLifted() {
        var routing = table([("ums1", .up, .normal), ("ums2", .up, .normal)])
        routing.apply(.installDrainSet(true), to: "ums1")
        for trafficClass in [TrafficClass.device, .console] {
            guard case .tryNodes(let order) = routing.route(trafficClass, algorithm: .leastConnections, clientKey: "c")
            else {
                Issue.record("refused")
                return
            }
            #expect(order == ["ums2"], "\(trafficClass)")
        }
        routing.replaceNodes(with: [NodeRecord(id: "ums1"), NodeRecord(id: "ums2")], readdressed: ["ums1"])
        #expect(routing.status(of: "ums1")?.installDrain == true, "an address change must not lift it")
        #expect(Eligibility.reason(routing.status(of: "ums1")!, for: .device) == .down)
        routing.apply(.observed(NodeObservation(health: .up, mode: .normal)), to: "ums1")
        #expect(Eligibility.reason(routing.status(of: "ums1")!, for: .device) == .drainingForInstall)
        routing.apply(.installDrainSet(false), to: "ums1")
        #expect(Eligibility.reason(routing.status(of: "ums1")!, for: .device) == nil)
    }

    @Test func anEventReportsThePreviousStateOnlyOnChange() {
        var routing = table([("ums1", .up, .normal)])
        #expect(routing.apply(.observed(NodeObservation(health: .up, mode: .normal)), to: "ums1") == nil)
        #expect(routing.apply(.observed(NodeObservation(health: .down, mode: .normal)), to: "ums1")?.health == .up)
        #expect(routing.apply(.adminStateSet(.draining), to: "nope") == nil)
    }

    @Test func anOverrideWinsUntilReleasedWhichBringsTheLastReportBack() {
        var routing = table([("ums1", .up, .normal)])
        routing.apply(.modeOverridden(.update), to: "ums1")
        routing.apply(.observed(NodeObservation(health: .up, mode: .installing, version: "12.07.100")), to: "ums1")
        #expect(routing.status(of: "ums1")?.mode == .update)
        #expect(routing.status(of: "ums1")?.version == "12.07.100")
        routing.apply(.modeOverridden(nil), to: "ums1")
        #expect(routing.status(of: "ums1")?.mode == .installing)
    }
}
