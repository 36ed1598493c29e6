import Foundation

/// One node's step (start, drain, install, back, canary, done), the reconnect stage, and the deadlines.
extension UpdateDriveMachine {
    /// Moves the step at `index` as far as `observation` allows.
    mutating func advance(
        _ drive: inout UpdateDrive, at index: Int, _ observation: DriveObservation, now: Date
    ) -> [DriveAction] {
        let node = drive.steps[index].node
        let isLast = index == drive.steps.count - 1
        let status = observation.nodes.first { $0.id == node }
        let target = Version(drive.targetVersion)
        let onTarget = target != nil && status?.version.flatMap(Version.init) == target
        let up = status?.health == .up
        switch drive.steps[index].phase {
        case .pending:
            guard drive.state == .running else { return [] }
            if let busy = Self.unavailable(besides: node, observation.nodes) {
                let reason = "\(busy.id) is \(busy.health == .down ? "down" : busy.mode.rawValue)"
                guard waitSaid != "\(node): \(reason)" else { return [] }
                waitSaid = "\(node): \(reason)"
                return [.stepWaiting(node, reason: "\(reason): one server out at a time")]
            }
            waitSaid = nil
            // A step the operator resumed keeps its start: `nodeBack` counts from the first call.
            drive.steps[index].startedAt = drive.steps[index].startedAt ?? now
            if up, onTarget, let mode = status?.mode, Self.isBack(mode, isLast: isLast) {
                drive.steps[index].lastAnswer = "already on \(drive.targetVersion): no install needed"
                return [.installSkipped(node, mode: mode)]
                    + arrive(&drive, at: index, mode: mode, observation, now: now)
            }
            // Nothing open: the drain (held from the call until the node is back) has nothing to wait for.
            let open = observation.open[node] ?? 0
            guard open > 0 else { return [call(&drive, at: index, now: now)] }
            drive.steps[index].phase = .draining
            drive.steps[index].deadline = now.addingTimeInterval(settings.drainTimeout.seconds)
            return [.drainingForInstall(node, connections: open, timeout: settings.drainTimeout)]
        case .draining:
            return drain(&drive, at: index, observation, now: now)
        case .calling, .installing:
            guard let status, up else { return [] }
            if status.mode == .installing {
                guard !drive.steps[index].sawInstalling else { return [] }
                drive.steps[index].sawInstalling = true
                return [.nodeInstalling(node)]
            }
            if onTarget, Self.isBack(status.mode, isLast: isLast) {
                return arrive(&drive, at: index, mode: status.mode, observation, now: now)
            }
            guard drive.steps[index].stalled == nil else { return [] }
            if onTarget, isLast, status.mode == .update {
                return stall(
                    &drive, at: index,
                    "\(node), the last server, came back in update mode, not normal: a server UMS counts is not"
                        + " on \(drive.targetVersion) yet (one in maintenance?); update it, then resume")
            }
            if drive.steps[index].sawInstalling, [.normal, .update].contains(status.mode), !onTarget {
                return stall(
                    &drive, at: index,
                    "the install failed: \(node) is back in \(status.mode) mode on \(status.version ?? "?"); "
                        + "see its installer's log, then resume to install it again")
            }
            return []
        case .canary:
            let served = observation.served[node] ?? 0
            let baseline = drive.steps[index].canaryBaseline ?? served
            drive.steps[index].canaryBaseline = baseline
            drive.steps[index].canaryServed = max(0, served - baseline)
            guard let status, up, onTarget, [.update, .normal].contains(status.mode),
                drive.steps[index].canaryServed >= settings.canaryConnections
            else { return [] }
            return resumeIfUnstalled(&drive, at: index, "\(node) passed its canary gate after all")
                + [finish(&drive, at: index, now: now)]
        case .done:
            return []
        }
    }

    /// The node takes no new connections: its install is called once nothing is open to it, or at
    /// `update.drain_timeout` (the node, going down, closes what is left, WebSockets with 1001 as
    /// for a reconnect); with `update.drain_rate` the balancer closes what is left first, at that
    /// pace. Another server going out meanwhile lifts the drain (one server out at a time: a
    /// drained one counts) until that one is back.
    private mutating func drain(
        _ drive: inout UpdateDrive, at index: Int, _ observation: DriveObservation, now: Date
    ) -> [DriveAction] {
        let node = drive.steps[index].node
        guard drive.state == .running else { return [] }
        if Self.unavailable(besides: node, observation.nodes) != nil {
            drive.steps[index].phase = .pending
            drive.steps[index].deadline = nil
            closingDrain = nil
            return advance(&drive, at: index, observation, now: now)
        }
        let open = observation.open[node] ?? 0
        let closing = closingDrain?.node == node ? closingDrain : nil
        if open == 0 || closing.map({ now >= $0.callBy }) == true {
            closingDrain = nil
            return [call(&drive, at: index, now: now)]
        }
        guard closing == nil, let deadline = drive.steps[index].deadline, now >= deadline else { return [] }
        guard let rate = settings.drainRate else { return [call(&drive, at: index, now: now)] }
        // Paced closing takes open / rate seconds; a few more for the last closes to be counted.
        let pacing = (Double(open) / Double(rate)).rounded(.up)
        closingDrain = ClosingDrain(node: node, callBy: now.addingTimeInterval(pacing + Self.closingGrace))
        return [.closeForInstall(node, connections: open, perSecond: rate)]
    }

    /// How long the closing of a drained node's connections may take beyond its pace.
    static let closingGrace: TimeInterval = 10

    /// A returning node may be counted back: update mode (normal too) for all but the last, which
    /// must be normal: it renewed the productive schema.
    static func isBack(_ mode: NodeMode, isLast: Bool) -> Bool {
        isLast ? mode == .normal : [.update, .normal].contains(mode)
    }

    /// A counted node other than `node` that is out of service now: no second node is taken out.
    static func unavailable(besides node: NodeID, _ nodes: [NodeStatus]) -> NodeStatus? {
        nodes.first { other in
            other.id != node && other.admin != .maintenance
                && (other.health == .down || [.installing, .reconnecting].contains(other.mode))
        }
    }

    /// The node is back on the target version: its canary gate opens (or, for the last node and
    /// without a gate, the step is done).
    private mutating func arrive(
        _ drive: inout UpdateDrive, at index: Int, mode: NodeMode, _ observation: DriveObservation, now: Date
    ) -> [DriveAction] {
        let node = drive.steps[index].node
        let isLast = index == drive.steps.count - 1
        let after = now.timeIntervalSince(drive.steps[index].startedAt ?? now)
        drive.steps[index].backAt = now
        var actions = resumeIfUnstalled(&drive, at: index, "\(node) came back on \(drive.targetVersion)")
        guard !isLast, settings.canaryConnections > 0 else {
            return actions + [
                .nodeBack(node, mode: mode, after: after, canary: 0), finish(&drive, at: index, now: now),
            ]
        }
        drive.steps[index].phase = .canary
        drive.steps[index].canaryBaseline = observation.served[node] ?? 0
        drive.steps[index].canaryServed = 0
        drive.steps[index].deadline = now.addingTimeInterval(settings.canaryTimeout.seconds)
        actions.append(.nodeBack(node, mode: mode, after: after, canary: settings.canaryConnections))
        return actions
    }

    private func finish(_ drive: inout UpdateDrive, at index: Int, now: Date) -> DriveAction {
        drive.steps[index].phase = .done
        drive.steps[index].finishedAt = now
        drive.steps[index].deadline = nil
        drive.steps[index].stalled = nil
        return .stepDone(
            drive.steps[index].node, took: drive.steps[index].duration ?? 0, served: drive.steps[index].canaryServed)
    }

    /// Records the install call (the caller persists it first), then asks for it.
    func call(_ drive: inout UpdateDrive, at index: Int, now: Date) -> DriveAction {
        drive.steps[index].phase = .calling
        drive.steps[index].attempts += 1
        drive.steps[index].sawInstalling = false
        drive.steps[index].stalled = nil
        drive.steps[index].lastAnswer = nil
        drive.steps[index].deadline = now.addingTimeInterval(settings.installTimeout.seconds)
        return .callInstall(
            drive.steps[index].node, version: drive.targetVersion, attempt: drive.steps[index].attempts,
            timeout: min(settings.installCallTimeout, settings.installTimeout))
    }

    /// The step is stuck: said loudly; a running drive becomes `stalled` (a paused one stays paused).
    func stall(_ drive: inout UpdateDrive, at index: Int, _ reason: String) -> [DriveAction] {
        drive.steps[index].stalled = reason
        var actions: [DriveAction] = [.stepStalled(drive.steps[index].node, reason: reason)]
        if drive.state == .running {
            drive.state = .stalled
            drive.reason = reason
            actions.append(.stateChanged(from: .running, to: .stalled, reason: reason))
        }
        return actions
    }

    /// A stalled step that got going by itself (its node came back after all) un-stalls the drive.
    private func resumeIfUnstalled(_ drive: inout UpdateDrive, at index: Int, _ why: String) -> [DriveAction] {
        guard drive.steps[index].stalled != nil else { return [] }
        drive.steps[index].stalled = nil
        guard drive.state == .stalled else { return [] }
        drive.state = .running
        drive.reason = why
        return [.stateChanged(from: .stalled, to: .running, reason: why)]
    }

    // MARK: - The reconnect stage and deadlines

    /// Every node is done: the tracked run reconnects the update-mode nodes; the drive completes
    /// with it, and stalls (or moves again) with it.
    mutating func followReconnect(_ drive: inout UpdateDrive, run: UpdateRun.State, now: Date) -> [DriveAction] {
        var actions: [DriveAction] = []
        if drive.reconnect == nil {
            drive.reconnect = DriveReconnect(startedAt: now)
            actions.append(.reconnectStageStarted)
        }
        let from = drive.state
        switch run {
        case .completed:
            drive.reconnect?.finishedAt = now
            drive.finishedAt = now
            drive.state = .completed
            drive.reason = "every server is normal on \(drive.targetVersion)"
            actions.append(.stateChanged(from: from, to: .completed, reason: drive.reason ?? ""))
        case .stalled where from == .running:
            drive.state = .stalled
            drive.reason = "the reconnect stalled: resume retries it (as update retry-reconnect does)"
            actions.append(.stateChanged(from: from, to: .stalled, reason: drive.reason ?? ""))
        case .reconnecting where from == .stalled:
            drive.state = .running
            drive.reason = "the reconnect moves again"
            actions.append(.stateChanged(from: from, to: .running, reason: drive.reason ?? ""))
        default:
            break
        }
        return actions
    }

    /// Steps past their deadline stall (once each).
    mutating func checkDeadlines(_ drive: inout UpdateDrive, now: Date) -> [DriveAction] {
        var actions: [DriveAction] = []
        for index in drive.steps.indices {
            let step = drive.steps[index]
            guard step.stalled == nil, let deadline = step.deadline, now >= deadline,
                [.calling, .installing, .canary].contains(step.phase)
            else { continue }
            actions += stall(&drive, at: index, missedDeadline(step, target: drive.targetVersion))
        }
        return actions
    }

    private func missedDeadline(_ step: DriveStep, target: String) -> String {
        switch step.phase {
        case .canary:
            return "\(step.node) served \(step.canaryServed) of \(settings.canaryConnections) device connections"
                + " within update.canary_timeout (\(DurationText.format(settings.canaryTimeout))) of its return"
        case .calling:
            return "\(step.node) not back on \(target) within update.install_timeout"
                + " (\(DurationText.format(settings.installTimeout))): the install call had no answer"
        default:
            let seen = step.sawInstalling ? "it is still installing" : "it never reported installing"
            return "\(step.node) not back on \(target) within update.install_timeout"
                + " (\(DurationText.format(settings.installTimeout))) of its install call: \(seen)"
        }
    }
}
