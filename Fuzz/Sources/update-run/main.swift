import BalancerCore
import Foundation
import FuzzSupport

/// The update-run machine fed what three nodes report, in any order, with the balancer's own
/// events between (drains finished, reconnect answers, time, an operator's retry or end, a
/// restart from the persisted run, a driven update's pause).
///
/// Input: one byte of settings (a reconnect action or the operator's, `max_unavailable` 1 or 2,
/// `drain_rate` or not), then events: the low three bits pick one, the rest is its argument; a node
/// report takes one more byte (health, mode, version 12.6/12.7/12.8 or none, maintenance). Promises
/// checked:
/// - no node is ever drained by the run when it has ended or completed: every drain is released
///   (a drain left behind keeps a node out of rotation for good);
/// - a reconnect is called, or its connections closed, only for a node the run drained, and never
///   more nodes are drained at once than `max_unavailable`;
/// - every run ends: when the nodes report a quiet cluster (all normal on one version), the run is
///   over (`idle` or `completed`) after that report;
/// - `completed` only when every counted node reports normal on the target version;
/// - the state changes it reports chain (`from` is the state it was in) and end where the run is.
func fuzzUpdateRun(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var bytes = fuzzInput(data, size)[...]
    guard let choice = bytes.popFirst() else { return 0 }
    let settings = UpdateRunMachine.Settings(
        drainTimeout: .seconds(30), reconnectTimeout: .seconds(60), retries: 2, hasReconnectAction: choice & 1 == 0,
        installTimeout: .seconds(600), maxDuration: .seconds(3600), maxUnavailable: choice & 2 == 0 ? 1 : 2,
        drainRate: choice & 4 == 0 ? nil : 5)
    var machine = UpdateRunMachine(settings: settings)
    var nodes = ["ums1", "ums2", "ums3"].map { NodeStatus(id: $0, health: .up, mode: .normal, version: "12.6") }
    var now = Date(timeIntervalSince1970: 1_800_000_000)
    var state = machine.run.state
    var drained: Set<NodeID> = []

    func apply(_ actions: [UpdateAction], _ label: @escaping @autoclosure () -> String) {
        let event = LazyText(label)
        for action in actions {
            switch action {
            case .stateChanged(let from, let to, _):
                invariant(from == state, "\(event): a change from \(from) while the run was \(state)")
                state = to
                if to == .completed {
                    let counted = nodes.filter { $0.admin != .maintenance }
                    invariant(
                        counted.allSatisfy { $0.mode == .normal && $0.version == machine.run.targetVersion },
                        "\(event): completed on \(machine.run.targetVersion ?? "-") with \(counted)")
                }
            case .drain(let node):
                drained.insert(node)
            case .release(let node):
                drained.remove(node)
            case .callReconnect(let node, _, _), .closeConnections(let node, _):
                invariant(drained.contains(node), "\(event): \(action) for \(node), not drained (\(drained))")
            default:
                break
            }
        }
        invariant(state == machine.run.state, "\(event): said \(state), the run is \(machine.run.state)")
        invariant(
            drained.count <= settings.maxUnavailable,
            "\(event): \(drained.sorted()) drained at once, max_unavailable \(settings.maxUnavailable)")
        if [.idle, .completed].contains(machine.run.state) {
            invariant(drained.isEmpty, "\(event): \(drained.sorted()) still drained, the run is \(machine.run.state)")
        }
    }

    while let byte = bytes.popFirst() {
        let argument = Int(byte >> 3)
        switch byte & 7 {
        case 0:
            guard let report = bytes.popFirst() else { break }
            let index = argument % nodes.count
            nodes[index].take(fuzzReport: report, maintenance: true)
            apply(machine.nodesObserved(nodes, now: now), "nodesObserved(\(nodes))")
            let counted = nodes.filter { $0.admin != .maintenance }
            let quiet =
                !counted.isEmpty && counted.allSatisfy { $0.mode == .normal }
                && Set(counted.compactMap(\.version)).count <= 1
            if quiet {
                invariant(
                    !machine.run.isRunning, "a quiet cluster (\(counted)) leaves the run \(machine.run.state)")
            }
        case 1:
            apply(machine.drainFinished(nodes[argument % nodes.count].id, now: now), "drainFinished")
        case 2:
            let node = nodes[(argument >> 1) % nodes.count].id
            let answer: ReconnectAnswer = argument & 1 == 0 ? .accepted("202") : .rejected("409")
            apply(machine.reconnectAnswered(node, answer, now: now), "reconnectAnswered(\(node), \(answer))")
        case 3:
            now = now.addingTimeInterval(TimeInterval(argument * argument))
            apply(machine.tick(now: now), "tick")
        case 4:
            apply(machine.retryRequested(now: now), "retryRequested")
        case 5:
            // A restart: the run comes back from the state database; the drains, held in memory, do not.
            machine = UpdateRunMachine(run: machine.run, settings: settings)
            drained = []
            apply(machine.resumed(now: now), "resumed")
        case 6:
            if let actions = try? machine.endRequested(by: "fuzz", nodes: nodes, now: now) {
                apply(actions, "endRequested")
            }
        default:
            machine.reconnectsHeld = argument & 1 == 1
            apply(machine.tick(now: now), "tick after reconnectsHeld = \(machine.reconnectsHeld)")
        }
    }
    return 0
}

runFuzzer(fuzzUpdateRun)
