import Foundation

/// Drives a rolling update node by node: events in (observations, call answers, operator requests,
/// time), actions out. Each node in the plan's order is drained (no new connections; its open ones
/// finish, or are closed after `update.drain_timeout`), installed, must come back on the target
/// version (in update mode; the last one in normal mode, having renewed the productive schema) and,
/// except the last, pass the canary gate (`update.canary_connections` device connections served
/// through the balancer since it came back) before the next one starts. Then the tracked run's
/// reconnect takes the update-mode nodes back, `reconnect.max_unavailable` at a time.
///
/// An install call is recorded (`UpdateDrive`, persisted by the I/O layer) before it is made and
/// never repeated by the balancer itself: after a restart, a call that may have been made is taken
/// to have arrived. Only an operator's `resume` of a stalled step calls a node again, and only when
/// the node shows no sign of installing.
public struct UpdateDriveMachine: Sendable {
    /// The tunables: deadlines and the canary gate.
    public struct Settings: Sendable, Hashable {
        /// A node not back on the target version this long after its install call stalls the drive.
        public var installTimeout: Duration
        /// The longest one install call may take (`install.timeout`).
        public var installCallTimeout: Duration
        /// Device connections a returning node must serve before the next node starts (0: none).
        public var canaryConnections: Int
        /// A node that has not passed its canary gate this long after its return stalls the drive.
        public var canaryTimeout: Duration
        /// A node is left this long to finish its open connections before its install
        /// (`update.drain_timeout`, as before a reconnect); then the balancer closes them.
        public var drainTimeout: Duration
        /// Connections closed per second once `drainTimeout` has passed (nil: all at once).
        public var drainRate: Int?

        public init(
            installTimeout: Duration = UpdateSettings().installTimeout, installCallTimeout: Duration = .seconds(60),
            canaryConnections: Int = UpdateSettings().canaryConnections,
            canaryTimeout: Duration = UpdateSettings().canaryTimeout,
            drainTimeout: Duration = UpdateSettings().drainTimeout, drainRate: Int? = nil
        ) {
            self.installTimeout = installTimeout
            self.installCallTimeout = installCallTimeout
            self.canaryConnections = max(0, canaryConnections)
            self.canaryTimeout = canaryTimeout
            self.drainTimeout = drainTimeout
            self.drainRate = drainRate.map { max(1, $0) }
        }
    }

    /// A drain past its timeout whose connections the balancer is closing: the install is called
    /// once they are gone, or at `callBy` in any case (a count that never reaches zero must not
    /// hold the update). In memory: a restart starts the drain again.
    struct ClosingDrain: Sendable, Hashable {
        var node: NodeID
        var callBy: Date
    }

    /// The drive under way, or the last one (completed or aborted); nil when none was started.
    public internal(set) var drive: UpdateDrive?
    public var settings: Settings
    /// The wait last said (`stepWaiting`), so that a wait is said once, not per tick.
    var waitSaid: String?
    /// The drain whose remaining connections are being closed, if any.
    var closingDrain: ClosingDrain?

    public init(drive: UpdateDrive? = nil, settings: Settings) {
        self.drive = drive
        self.settings = settings
    }

    // MARK: - Starting

    /// An operator asks to update the cluster to `version` in `plan`'s order. Refused while a drive
    /// is under way, for a version no server needs, when a node has no install action, and (unless
    /// `force`) when a check of the plan fails.
    public mutating func startRequested(
        version: String, plan: UpdatePlan, observation: DriveObservation, withoutInstall: [NodeID], force: Bool,
        by actor: String, now: Date
    ) throws(DriveStartRefusal) -> [DriveAction] {
        if let drive, drive.state.isActive { throw .driveUnderWay(drive) }
        guard let target = Version(version) else { throw .invalidVersion(version) }
        guard !plan.order.isEmpty else { throw .nothingToUpdate("no server to update: every one is in maintenance") }
        let counted = observation.nodes.filter { plan.order.contains($0.id) }
        let versions = counted.compactMap { node in node.version.flatMap(Version.init).map { (node.id, $0) } }
        if let higher = versions.first(where: { $0.1 > target }) {
            throw .nothingToUpdate("\(higher.0) runs \(higher.1), higher than \(version): nothing to update to")
        }
        if counted.count == plan.order.count, counted.allSatisfy({ $0.mode == .normal }),
            versions.count == counted.count, versions.allSatisfy({ $0.1 == target })
        {
            throw .nothingToUpdate("every server already runs \(version) in normal mode")
        }
        let missing = plan.order.filter { withoutInstall.contains($0) }
        guard missing.isEmpty else { throw .noInstallAction(missing) }
        let failed = plan.checks.filter { $0.result == .fail }
        guard failed.isEmpty || force else { throw .planNotReady(failed) }

        var drive = UpdateDrive(
            targetVersion: version, order: plan.order, startedAt: now, startedBy: actor, forced: !failed.isEmpty)
        drive.startingVersion = versions.map(\.1).min()?.description
        var reason = "started by \(actor): \(plan.order.joined(separator: " -> ")) to \(version)"
        if !failed.isEmpty { reason += " (forced past: \(failed.map(\.name).joined(separator: ", ")))" }
        drive.reason = reason
        self.drive = drive
        waitSaid = nil
        return [.stateChanged(from: nil, to: .running, reason: reason)] + observed(observation, now: now)
    }

    // MARK: - Events

    /// The nodes, their served device connections and the run as they stand now (also each tick):
    /// steps advance, the next one starts, deadlines are checked.
    public mutating func observed(_ observation: DriveObservation, now: Date) -> [DriveAction] {
        guard var drive, drive.state.isActive else { return [] }
        var actions: [DriveAction] = []
        // Bounded: a pass that finishes a step lets the next one start in the same observation.
        for _ in 0...drive.steps.count {
            guard let index = drive.currentIndex else { break }
            actions += advance(&drive, at: index, observation, now: now)
            guard drive.steps[index].phase == .done else { break }
        }
        if drive.currentIndex == nil {
            actions += followReconnect(&drive, run: observation.run, now: now)
        }
        actions += checkDeadlines(&drive, now: now)
        self.drive = drive
        return actions
    }

    /// The install call to `node` came back. An answer for a step no longer calling is ignored.
    public mutating func installAnswered(_ node: NodeID, _ answer: ReconnectAnswer, now: Date) -> [DriveAction] {
        guard var drive, drive.state.isActive,
            let index = drive.steps.firstIndex(where: { $0.node == node }), drive.steps[index].phase == .calling
        else { return [] }
        var actions: [DriveAction] = []
        switch answer {
        case .accepted(let detail):
            drive.steps[index].phase = .installing
            drive.steps[index].lastAnswer = detail
        case .rejected(let detail):
            drive.steps[index].lastAnswer = detail
            if drive.steps[index].sawInstalling {
                // The node installs whatever the call said (an answer lost on the way back, say).
                drive.steps[index].phase = .installing
            } else {
                actions += stall(&drive, at: index, "the install call to \(node) failed: \(detail)")
            }
        }
        self.drive = drive
        return actions
    }

    /// After a restart from the persisted drive: a call that may have been made is taken to have
    /// arrived (never made twice), and canary counts start again (they live in memory).
    public mutating func resumedAfterRestart(now: Date) -> [DriveAction] {
        guard var drive, drive.state.isActive else { return [] }
        for index in drive.steps.indices {
            switch drive.steps[index].phase {
            case .calling:
                drive.steps[index].phase = .installing
                drive.steps[index].lastAnswer =
                    "the balancer restarted during the install call: taken to have arrived (never called twice)"
            case .draining:
                // The closing of its connections was in memory: the drain starts again.
                drive.steps[index].phase = .pending
                drive.steps[index].deadline = nil
            case .canary:
                drive.steps[index].canaryBaseline = nil
            case .pending, .installing, .done:
                break
            }
        }
        self.drive = drive
        waitSaid = nil
        closingDrain = nil
        return []
    }
}
