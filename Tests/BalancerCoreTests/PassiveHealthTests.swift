import BalancerCore
import Glibc
import Testing

/// Passive health and node limits in routing: what real connections show takes a node out of
/// rotation for a while; a node at its `max_connections` takes no more.
@Suite struct PassiveHealthTests {
    let start = ContinuousClock.now

    func table(_ ids: [NodeID] = ["ums1", "ums2"]) -> RoutingTable {
        var table = RoutingTable(nodes: ids.map { NodeStatus(id: $0, health: .up, mode: .normal) })
        var passive = PassiveHealthSettings()
        passive.failures = 3
        passive.ejection = .seconds(10)
        passive.maxEjection = .seconds(25)
        table.passive = passive
        table.returnSlowStart = .seconds(30)
        return table
    }

    func first(_ table: inout RoutingTable, at offset: Duration = .zero) -> NodeID? {
        guard
            case .tryNodes(let order) = table.route(.device, algorithm: .roundRobin, clientKey: "", now: start + offset)
        else { return nil }
        return order.first
    }

    func order(_ table: inout RoutingTable, at offset: Duration = .zero) -> [NodeID] {
        guard
            case .tryNodes(let order) = table.route(.device, algorithm: .roundRobin, clientKey: "", now: start + offset)
        else { return [] }
        return order
    }

    @Test func consecutiveFailuresTakeANodeOutOfRotationEvenThoughItsProbeSaysUp() {
        var routing = table()
        #expect(routing.nodeFailed("ums1", reason: "connection refused", now: start) == nil)
        #expect(routing.nodeFailed("ums1", reason: "connection refused", now: start) == nil)
        let event = routing.nodeFailed("ums1", reason: "closed without answering", now: start)
        #expect(event == .ejected("ums1", duration: .seconds(10), failures: 3, reason: "closed without answering"))
        #expect(routing.isEjected("ums1", now: start))
        for _ in 0..<10 { #expect(order(&routing, at: .seconds(1)) == ["ums2", "ums1"], "ums1 only as a last resort") }
    }

    @Test func anEjectedNodeStillServesWhenEveryNodeInRotationFails() {
        var routing = table(["ums1", "ums2", "ums3"])
        for _ in 0..<3 { _ = routing.nodeFailed("ums1", reason: "refused", now: start) }
        for _ in 0..<6 { #expect(order(&routing, at: .seconds(1)).last == "ums1") }
    }

    @Test func aNodeBackFromItsInstallIsForgivenAtOnce() {
        var routing = table(["ums1", "ums2"])
        // The service port refused while the node was installing, before its probe said so.
        for _ in 0..<3 { _ = routing.nodeFailed("ums1", reason: "connection refused", now: start) }
        routing.apply(.observed(NodeObservation(health: .up, mode: .installing)), to: "ums1")
        #expect(routing.isEjected("ums1", now: start + .seconds(1)), "still installing: still out")
        routing.apply(.observed(NodeObservation(health: .up, mode: .update)), to: "ums1")
        #expect(!routing.isEjected("ums1", now: start + .seconds(1)))
        #expect(routing.takePendingEvents() == [.returned("ums1")])
        #expect(!routing.hasFailureRecord("ums1"))
    }

    @Test func aModeChangeBetweenServingModesForgivesNothing() {
        var routing = table(["ums1", "ums2"])
        for _ in 0..<3 { _ = routing.nodeFailed("ums1", reason: "refused", now: start) }
        routing.apply(.observed(NodeObservation(health: .up, mode: .update)), to: "ums1")
        #expect(routing.isEjected("ums1", now: start + .seconds(1)))
    }

    @Test func anAnswerForgivesEarlierFailures() {
        var routing = table()
        _ = routing.nodeFailed("ums1", reason: "refused", now: start)
        _ = routing.nodeFailed("ums1", reason: "refused", now: start)
        #expect(routing.hasFailureRecord("ums1"))
        routing.nodeAnswered("ums1")
        #expect(!routing.hasFailureRecord("ums1"))
        #expect(routing.nodeFailed("ums1", reason: "refused", now: start) == nil, "counting starts again")
    }

    @Test func anEjectedNodeComesBackThroughSlowStartAndSaysSo() {
        var routing = table()
        for _ in 0..<3 { _ = routing.nodeFailed("ums1", reason: "refused", now: start) }
        #expect(order(&routing, at: .seconds(9)) == ["ums2", "ums1"])
        #expect(routing.takePendingEvents().isEmpty)
        #expect(order(&routing, at: .seconds(10)).contains("ums1"))
        #expect(routing.takePendingEvents() == [.returned("ums1")])
        #expect(routing.weight(of: "ums1", now: start + .seconds(10)) < 0.2, "back at a small share")
    }

    @Test func aNodeThatFailsAgainAfterComingBackStaysOutTwiceAsLongUpToTheMaximum() {
        var routing = table()
        var at = Duration.zero
        var lengths: [Duration] = []
        for _ in 0..<3 {
            for _ in 0..<3 {
                if case .ejected(_, let length, _, _) = routing.nodeFailed("ums1", reason: "refused", now: start + at) {
                    lengths.append(length)
                    at += length
                }
            }
        }
        #expect(lengths == [.seconds(10), .seconds(20), .seconds(25)])
    }

    @Test func failuresWhileEjectedDoNotExtendTheEjection() {
        var routing = table()
        for _ in 0..<3 { _ = routing.nodeFailed("ums1", reason: "refused", now: start) }
        for _ in 0..<10 { #expect(routing.nodeFailed("ums1", reason: "refused", now: start + .seconds(5)) == nil) }
        #expect(!routing.isEjected("ums1", now: start + .seconds(10)))
    }

    @Test func whenEveryNodeIsEjectedTheyAreStillTriedRatherThanRefused() {
        var routing = table()
        for node in ["ums1", "ums2"] {
            for _ in 0..<3 { _ = routing.nodeFailed(node, reason: "refused", now: start) }
        }
        #expect(Set(order(&routing, at: .seconds(1))) == ["ums1", "ums2"])
    }

    @Test func onlyFailuresOfTheNodesServiceCountAgainstIt() {
        #expect(NodeFailureKind(connectError: ECONNREFUSED) == .refused)
        #expect(NodeFailureKind(connectError: ETIMEDOUT) == .timedOut)
        for counted in [NodeFailureKind.refused, .timedOut, .closedWithoutAnswer, .socket(.connectionReset)] {
            #expect(counted.countsAgainstNode, "\(counted)")
        }
        // Every ephemeral port toward the node waits in TIME_WAIT, the balancer is out of
        // descriptors, or a name did not resolve: the node's service said nothing.
        let local = NodeFailureKind(connectError: EADDRNOTAVAIL)
        #expect(!local.countsAgainstNode)
        #expect(local.description == "no local port free toward the node (ip_local_port_range in TIME_WAIT)")
        #expect(!NodeFailureKind(connectError: EMFILE).countsAgainstNode)
        #expect(!NodeFailureKind.unresolved("ums1.example").countsAgainstNode)
    }

    @Test func passiveHealthOffNeverEjects() {
        var routing = table()
        routing.passive.failures = 0
        for _ in 0..<20 { #expect(routing.nodeFailed("ums1", reason: "refused", now: start) == nil) }
        #expect(order(&routing).contains("ums1"))
    }

    @Test func aNodeAtItsMaxConnectionsTakesNoMoreAndWhenAllAreFullTheConnectionQueues() {
        var routing = table()
        routing.connectionLimits = ["ums1": 1, "ums2": 2]
        routing.connectionOpened(to: "ums1")
        #expect(order(&routing) == ["ums2"])
        routing.connectionOpened(to: "ums2")
        routing.connectionOpened(to: "ums2")
        #expect(routing.route(.device, algorithm: .roundRobin, clientKey: "", now: start) == .queue)
        routing.connectionClosed(from: "ums1")
        #expect(order(&routing) == ["ums1"])
    }

    @Test func aFullNodeIsNoReasonToRefuseWhenNoNodeIsEligible() {
        var routing = RoutingTable(nodes: [NodeStatus(id: "ums1", health: .down, mode: .normal)])
        routing.connectionLimits = ["ums1": 1]
        guard case .refuse = routing.route(.device, algorithm: .roundRobin, clientKey: "", now: start) else {
            Issue.record("a down node is a refusal, not a queue")
            return
        }
    }

    @Test func aReaddressedNodeLosesItsRecord() {
        var routing = table()
        for _ in 0..<3 { _ = routing.nodeFailed("ums1", reason: "refused", now: start) }
        routing.replaceNodes(
            with: [NodeRecord(id: "ums1", observation: NodeObservation(health: .up, mode: .normal))],
            readdressed: ["ums1"])
        #expect(!routing.isEjected("ums1", now: start))
        #expect(order(&routing) == ["ums1"])
    }
}
