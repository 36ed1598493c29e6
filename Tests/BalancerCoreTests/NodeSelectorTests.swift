import BalancerCore
import Testing

@Suite struct NodeSelectorTests {
    let nodes = [
        NodeLoad(id: "ums1", activeConnections: 5),
        NodeLoad(id: "ums2", activeConnections: 1),
        NodeLoad(id: "ums3", activeConnections: 3),
    ]

    @Test func leastConnectionsTriesTheLeastLoadedNodeFirst() {
        let order = NodeSelector.order(nodes, algorithm: .leastConnections, rotation: 0, clientKey: "10.1.1.1")
        #expect(order == ["ums2", "ums3", "ums1"])
    }

    @Test func leastConnectionsRotatesAmongEquallyLoadedNodes() {
        let equal = ["a", "b", "c"].map { NodeLoad(id: $0, activeConnections: 0) }
        let firsts = (0..<6).map {
            NodeSelector.order(equal, algorithm: .leastConnections, rotation: $0, clientKey: "x").first!
        }
        #expect(firsts == ["a", "b", "c", "a", "b", "c"])
    }

    @Test func roundRobinTakesEachNodeInTurnAndKeepsTheRestAsFailover() {
        #expect(
            NodeSelector.order(nodes, algorithm: .roundRobin, rotation: 1, clientKey: "x") == ["ums2", "ums3", "ums1"])
        #expect(
            NodeSelector.order(nodes, algorithm: .roundRobin, rotation: 5, clientKey: "x") == ["ums3", "ums1", "ums2"])
        #expect(
            NodeSelector.order(nodes, algorithm: .roundRobin, rotation: -1, clientKey: "x") == ["ums3", "ums1", "ums2"])
    }

    @Test func sourceAffinityKeepsAClientOnItsNodeWhateverTheLoad() {
        let first = NodeSelector.order(nodes, algorithm: .source, rotation: 0, clientKey: "10.0.0.50")
        for rotation in 1..<20 {
            var loaded = nodes
            loaded[rotation % 3].activeConnections += rotation * 10
            #expect(NodeSelector.order(loaded, algorithm: .source, rotation: rotation, clientKey: "10.0.0.50") == first)
        }
    }

    @Test func sourceAffinityMovesOnlyTheClientsOfARemovedNode() {
        let clients = (0..<300).map { "10.0.\($0 / 250).\($0 % 250)" }
        let before = clients.map { NodeSelector.order(nodes, algorithm: .source, rotation: 0, clientKey: $0).first! }
        let without = nodes.filter { $0.id != "ums2" }
        for (client, node) in zip(clients, before) where node != "ums2" {
            #expect(NodeSelector.order(without, algorithm: .source, rotation: 0, clientKey: client).first == node)
        }
    }

    @Test func sourceAffinitySpreadsClientsOverAllNodes() {
        var counts: [NodeID: Int] = [:]
        for i in 0..<900 {
            let node = NodeSelector.order(
                nodes, algorithm: .source, rotation: 0, clientKey: "192.168.\(i / 200).\(i % 200)"
            ).first!
            counts[node, default: 0] += 1
        }
        #expect(counts.count == 3)
        #expect(counts.values.allSatisfy { $0 > 200 })
    }

    @Test(arguments: BalanceAlgorithm.allCases)
    func noEligibleNodesGiveAnEmptyOrder(algorithm: BalanceAlgorithm) {
        #expect(NodeSelector.order([], algorithm: algorithm, rotation: 3, clientKey: "x").isEmpty)
    }
}
