import BalancerCore
import Foundation
import Testing

/// The reconnect keeps capacity: update-mode nodes are taken out `max_unavailable` at a time, in one
/// order on every balancer, counting nodes the cluster reports unavailable; a paced drain closes
/// what is left at `drain_rate` per second before the call.
@Suite struct ReconnectCapacityTests: RunScenario {
    static let settings = UpdateRunMachine.Settings(
        drainTimeout: .seconds(30), reconnectTimeout: .seconds(120), retries: 2, hasReconnectAction: true)
    var machine = UpdateRunMachine(settings: settings)
    var now = RunScenarioDefaults.start
    var nodes = ["ums1", "ums2", "ums3", "ums4"].map {
        NodeStatus(id: $0, health: .up, mode: .normal, version: "12.06.100")
    }

    /// ums1-3 in update mode on 12.07.100, then ums4 renews the schema.
    mutating func installFourNodes() -> [UpdateAction] {
        for node in ["ums1", "ums2", "ums3"] {
            _ = report(node, .installing)
            _ = report(node, .update, "12.07.100")
        }
        _ = report("ums4", .installing)
        return report("ums4", .normal, "12.07.100")
    }

    func drains(_ actions: [UpdateAction]) -> [NodeID] {
        actions.compactMap { if case .drain(let node) = $0 { node } else { nil } }
    }

    /// Nodes out of service now: drained, reconnecting, or down.
    func outOfService(_ machine: UpdateRunMachine) -> [NodeID] {
        machine.run.reconnects.filter { ![.queued, .done].contains($0.value.phase) }.keys.sorted()
    }

    @Test mutating func oneNodeAtATimeTheNextWhenThePreviousIsBack() {
        #expect(drains(installFourNodes()) == ["ums1"])
        #expect(machine.run.reconnects["ums2"]?.phase == .queued)
        #expect(machine.run.summary == "update 12.07.100: 4 of 4 servers updated, reconnecting ums1 (then ums2, ums3)")
        var order: [NodeID] = ["ums1"]
        for node in ["ums1", "ums2", "ums3"] {
            #expect(outOfService(machine) == [node])
            #expect(machine.drainFinished(node, now: now) == [.callReconnect(node, attempt: 1, timeout: .seconds(10))])
            #expect(machine.reconnectAnswered(node, .accepted("HTTP 202"), now: now).isEmpty)
            #expect(drains(report(node, .reconnecting)).isEmpty, "nothing more while \(node) reconnects")
            #expect(drains(advance(100)).isEmpty)
            let back = report(node, .normal)
            #expect(back.contains(.release(node)))
            order += drains(back)
        }
        #expect(order == ["ums1", "ums2", "ums3"])
        #expect(machine.run.state == .completed)
    }

    @Test mutating func aNodeTheClusterReportsDownOrReconnectingCountsAsUnavailable() {
        // ums2 crashed before the final node completed: ums1 must wait, or two would be out.
        _ = report("ums1", .installing)
        _ = report("ums1", .update, "12.07.100")
        _ = report("ums2", .installing)
        _ = report("ums2", .update, "12.07.100")
        _ = report("ums3", .installing)
        _ = report("ums3", .update, "12.07.100")
        nodes[1].health = .down
        _ = report("ums4", .installing)
        let final = report("ums4", .normal, "12.07.100")
        #expect(machine.run.state == .reconnecting)
        #expect(drains(final).isEmpty, "ums2 is down: no second node may go")
        nodes[1].health = .up
        #expect(drains(report("ums2", .update)) == ["ums1"])
    }

    @Test mutating func twoBalancersFedTheSameObservationsTakeTheSameNodeAndNeverTwo() {
        var other = UpdateRunMachine(settings: Self.settings)
        var seen: [[NodeID]] = []
        func both(_ change: (inout [NodeStatus]) -> Void) -> ([NodeID], [NodeID]) {
            change(&nodes)
            let mine = drains(machine.nodesObserved(nodes, now: now))
            let theirs = drains(other.nodesObserved(nodes, now: now))
            seen.append(Array(Set(outOfService(machine) + outOfService(other))).sorted())
            return (mine, theirs)
        }
        for node in ["ums1", "ums2", "ums3"] {
            _ = both { $0[Int(node.dropFirst(3))! - 1].mode = .installing }
            _ = both {
                $0[Int(node.dropFirst(3))! - 1].mode = .update
                $0[Int(node.dropFirst(3))! - 1].version = "12.07.100"
            }
        }
        _ = both { $0[3].mode = .installing }
        let final = both {
            $0[3].mode = .normal
            $0[3].version = "12.07.100"
        }
        #expect(final.0 == ["ums1"] && final.1 == ["ums1"])
        for (index, node) in ["ums1", "ums2", "ums3"].enumerated() {
            _ = machine.drainFinished(node, now: now)
            _ = other.drainFinished(node, now: now)
            _ = both { $0[index].mode = .reconnecting }
            let next = both { $0[index].mode = .normal }
            let expected = index < 2 ? ["ums\(index + 2)"] : []
            #expect(next.0 == expected && next.1 == expected)
        }
        #expect(seen.allSatisfy { $0.count <= 1 }, "\(seen)")
        #expect(machine.run.state == .completed && other.run.state == .completed)
    }

    @Test(arguments: [1, 2, 3])
    func neverMoreThanMaxUnavailableOutAlsoWithTwoMachinesFedTheSameObservations(limit: Int) {
        var settings = Self.settings
        settings.maxUnavailable = limit
        var machines = [UpdateRunMachine(settings: settings), UpdateRunMachine(settings: settings)]
        var cluster = (1...6).map { NodeStatus(id: "ums\($0)", health: .up, mode: .normal, version: "12.06.100") }
        let now = RunScenarioDefaults.start
        func observe() {
            for index in machines.indices { _ = machines[index].nodesObserved(cluster, now: now) }
        }
        func set(_ index: Int, _ mode: NodeMode, _ version: String? = nil) {
            cluster[index].mode = mode
            if let version { cluster[index].version = version }
            observe()
        }
        for index in 0..<6 {
            set(index, .installing)
            set(index, index == 5 ? .normal : .update, "12.07.100")
        }
        var worst: Set<NodeID> = []
        // Bounded: each round moves one node one step (drained -> reconnecting -> normal).
        for _ in 0..<40 where machines[0].run.state != .completed {
            let reconnecting = cluster.filter { $0.mode == .reconnecting }.map(\.id)
            let out = Set(machines.flatMap(outOfService) + reconnecting)
            if out.count > worst.count { worst = out }
            guard let node = out.sorted().first, let index = cluster.firstIndex(where: { $0.id == node }) else { break }
            if cluster[index].mode == .update {
                for machine in machines.indices {
                    _ = machines[machine].drainFinished(node, now: now)
                    _ = machines[machine].reconnectAnswered(node, .accepted("HTTP 202"), now: now)
                }
                set(index, .reconnecting)
            } else {
                set(index, .normal)
            }
        }
        #expect(worst.count == limit, "never more than \(limit) out, and the limit is used: \(worst.sorted())")
        #expect(machines.allSatisfy { $0.run.state == .completed })
    }

    @Test mutating func aPacedDrainClosesWhatIsLeftBeforeTheCall() {
        machine.settings.drainRate = 20
        _ = installFourNodes()
        #expect(advance(29).isEmpty)
        #expect(advance(1) == [.closeConnections("ums1", perSecond: 20)])
        #expect(machine.run.reconnects["ums1"]?.phase == .closing)
        #expect(advance(5).isEmpty, "no call while connections are closed")
        #expect(machine.drainFinished("ums1", now: now) == [.callReconnect("ums1", attempt: 1, timeout: .seconds(10))])
    }

    @Test func thePacerClosesAtItsRateAndNeverABurst() {
        let start = RunScenarioDefaults.start
        var pacer = DrainPacer(perSecond: 10, start: start)
        #expect(pacer.allowance(at: start) == 1)
        #expect(pacer.allowance(at: start.addingTimeInterval(0.25)) == 2)
        #expect(pacer.allowance(at: start.addingTimeInterval(0.5)) == 3)
        var total = 6
        for step in 3...8 { total += pacer.allowance(at: start.addingTimeInterval(Double(step) * 0.25)) }
        #expect(total == 21, "two seconds at 10 per second, and the first at once")
        // A tick that comes a minute late closes one second's worth, not a minute's.
        #expect(pacer.allowance(at: start.addingTimeInterval(62)) == 10)
    }
}
