import BalancerCore
import Foundation
import FuzzSupport

/// A driven update of three nodes, with the tracked run beside it as the coordinator feeds them,
/// on any sequence of node reports, install answers, served device connections, time, an
/// operator's pause, resume and abort, and restarts from the persisted drive and run.
///
/// Input: one byte of settings (canary gate of 0 or 2 connections, drain rate of 2 per second or
/// none), then events: the low three bits pick one, the rest is its argument (a served connection,
/// or a node's open connections set to 0-2); a node report takes one more byte (health, mode,
/// version 12.6/12.7/12.8 or none). Promises checked:
/// - one server out at a time: an install is called only while every other node is up and
///   neither installing nor reconnecting, and a node is held drained for its install only then;
/// - drained first: an install is called only when nothing is open to the node, once the
///   balancer was told to close what its drain left, or (without a drain rate) once the drain
///   timed out;
/// - in the plan's order: an install is called only when every earlier step is done;
/// - never twice by itself: a node's install is called again only after an operator's resume;
/// - only while the drive runs: no call while it is paused, stalled or over.
func fuzzUpdateDrive(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var bytes = fuzzInput(data, size)[...]
    guard let choice = bytes.popFirst() else { return 0 }
    let order = ["ums1", "ums2", "ums3"]
    let driveSettings = UpdateDriveMachine.Settings(
        installTimeout: .seconds(600), installCallTimeout: .seconds(30), canaryConnections: choice & 1 == 0 ? 0 : 2,
        canaryTimeout: .seconds(300), drainTimeout: .seconds(10), drainRate: choice & 2 == 0 ? nil : 2)
    let runSettings = UpdateRunMachine.Settings(
        drainTimeout: .seconds(10), reconnectTimeout: .seconds(120), retries: 2, hasReconnectAction: true)
    var drive = UpdateDriveMachine(settings: driveSettings)
    var run = UpdateRunMachine(settings: runSettings)
    var nodes = order.map { NodeStatus(id: $0, health: .up, mode: .normal, version: "12.6") }
    var served: [NodeID: Int] = [:]
    var open: [NodeID: Int] = [:]
    /// Nodes whose drain timed out: the balancer was told to close their remaining connections.
    var closing: Set<NodeID> = []
    /// When each node's current drain began.
    var drainStarted: [NodeID: Date] = [:]
    var now = Date(timeIntervalSince1970: 1_800_000_000)
    var called: Set<NodeID> = []
    var observation: DriveObservation {
        DriveObservation(nodes: nodes, open: open, served: served, run: run.run.state)
    }
    func out(besides node: NodeID) -> [NodeStatus] {
        nodes.filter {
            $0.id != node && $0.admin != .maintenance
                && ($0.health == .down || [.installing, .reconnecting].contains($0.mode))
        }
    }

    func apply(_ actions: [DriveAction], _ label: @escaping @autoclosure () -> String) {
        let event = LazyText(label)
        for action in actions {
            if case .drainingForInstall(let node, _, _) = action {
                closing.remove(node)
                drainStarted[node] = now
            }
            if case .closeForInstall(let node, _, _) = action { closing.insert(node) }
            guard case .callInstall(let node, _, _, _) = action else { continue }
            let state = drive.drive?.state
            invariant(state == .running, "\(event): called \(node) while \(String(describing: state))")
            let others = out(besides: node)
            invariant(others.isEmpty, "\(event): called \(node) with \(others) out")
            let left = open[node] ?? 0
            let timedOut = drainStarted[node].map { now >= $0.addingTimeInterval(10) } == true
            invariant(
                left == 0 || closing.contains(node) || (driveSettings.drainRate == nil && timedOut),
                "\(event): called \(node) with \(left) open, undrained")
            closing.remove(node)
            let steps = drive.drive?.steps ?? []
            let earlier = steps.prefix { $0.node != node }
            invariant(earlier.allSatisfy { $0.phase == .done }, "\(event): called \(node) before \(earlier)")
            invariant(!called.contains(node), "\(event): called \(node) again by itself")
            called.insert(node)
        }
    }

    /// The coordinator's order: the run sees the nodes first, then the drive (with the run's state).
    func observe(_ label: @escaping @autoclosure () -> String) {
        _ = run.nodesObserved(nodes, now: now)
        run.reconnectsHeld = drive.drive?.state == .paused
        apply(drive.observed(observation, now: now), label())
        if let held = drive.drive?.installDrain, let index = drive.drive?.currentIndex,
            drive.drive?.steps[index].phase == .draining
        {
            let others = out(besides: held)
            invariant(others.isEmpty, "\(label()): \(held) held drained with \(others) out")
        }
    }

    let plan = UpdatePlan(checks: [], order: order)
    guard
        let started = try? drive.startRequested(
            version: "12.7", plan: plan, observation: observation, withoutInstall: [], force: false, by: "fuzz",
            now: now)
    else { return 0 }
    apply(started, "start")

    while let byte = bytes.popFirst() {
        let argument = Int(byte >> 3)
        switch byte & 7 {
        case 0:
            guard let report = bytes.popFirst() else { break }
            let index = argument % nodes.count
            nodes[index].take(fuzzReport: report, maintenance: false)
            observe("report \(nodes)")
        case 1:
            let node = order[(argument >> 1) % order.count]
            let answer: ReconnectAnswer = argument & 1 == 0 ? .accepted("202") : .rejected("500")
            apply(drive.installAnswered(node, answer, now: now), "installAnswered(\(node), \(answer))")
        case 2:
            now = now.addingTimeInterval(TimeInterval(argument * argument * 10))
            _ = run.tick(now: now)
            observe("tick")
        case 3:
            let node = order[(argument >> 1) % order.count]
            if argument & 1 == 0 {
                served[node, default: 0] += 1
                observe("served")
            } else {
                open[node] = (argument >> 3) % 3
                observe("open \(open)")
            }
        case 4:
            if let actions = try? drive.pauseRequested(by: "fuzz", now: now) { apply(actions, "pause") }
        case 5:
            if let actions = try? drive.resumeRequested(by: "fuzz", observation: observation, now: now) {
                // An operator's resume may call the stalled step's node again.
                if let index = drive.drive?.currentIndex, let step = drive.drive?.steps[index] {
                    called.remove(step.node)
                }
                apply(actions, "resume")
            }
        case 6:
            if let actions = try? drive.abortRequested(by: "fuzz", now: now) { apply(actions, "abort") }
        default:
            // A restart: drive and run come back from the state database.
            drive = UpdateDriveMachine(drive: drive.drive, settings: driveSettings)
            run = UpdateRunMachine(run: run.run, settings: runSettings)
            _ = run.resumed(now: now)
            apply(drive.resumedAfterRestart(now: now), "restart")
            observe("after restart")
        }
    }
    return 0
}

runFuzzer(fuzzUpdateDrive)
