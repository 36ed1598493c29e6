import Foundation

/// An update the balancer drives (`ums-balancer update start --version V`): the plan's order, node
/// by node (install, back, canary), the last node, then the reconnect. Persisted after every step,
/// so a restarted balancer continues, or stays paused, where it was.
public struct UpdateDrive: Sendable, Hashable, Codable {
    /// Where the drive stands.
    public enum State: String, Sendable, Hashable, Codable, CaseIterable {
        /// Steps start one after another.
        case running
        /// No new step starts (the one under way goes on: an installer cannot be stopped halfway).
        case paused
        /// A step missed its deadline or failed; an operator resumes (retries) or aborts.
        case stalled
        /// Every node is on the target version, in normal mode.
        case completed
        /// Stopped by an operator; the nodes were left as they were.
        case aborted

        /// The drive still has something to do.
        public var isActive: Bool { [.running, .paused, .stalled].contains(self) }
    }

    public var state: State
    public var targetVersion: String
    /// The version the cluster ran when the drive started.
    public var startingVersion: String?
    /// One step per node, in the plan's order; the last renews the productive schema.
    public var steps: [DriveStep]
    /// The reconnect of the update-mode nodes, once the last node is done.
    public var reconnect: DriveReconnect?
    public var startedAt: Date
    /// Who started it (`admin-api 127.0.0.1:5000`).
    public var startedBy: String
    /// Started with `--force` although the plan was not ready.
    public var forced: Bool
    public var finishedAt: Date?
    /// Why the drive last changed state (paused by whom, what stalled, who aborted).
    public var reason: String?

    public init(targetVersion: String, order: [NodeID], startedAt: Date, startedBy: String, forced: Bool = false) {
        self.state = .running
        self.targetVersion = targetVersion
        self.steps = order.map { DriveStep(node: $0) }
        self.startedAt = startedAt
        self.startedBy = startedBy
        self.forced = forced
    }

    /// The nodes in the order they are updated.
    public var order: [NodeID] { steps.map(\.node) }

    /// The first step not done: the one under way or the next to start; nil once every node is done.
    public var currentIndex: Int? { steps.firstIndex { $0.phase != .done } }

    /// The node held out of new connections for its install: from its drain until it is back on
    /// the target version. None while its step is stalled (the node serves again until an operator
    /// resumes) and once the drive is over.
    public var installDrain: NodeID? {
        guard state.isActive, let index = currentIndex else { return nil }
        let step = steps[index]
        guard step.stalled == nil, [.draining, .calling, .installing].contains(step.phase) else { return nil }
        return step.node
    }

    /// `drive-stalled:NODE` for a step that is stuck (also while paused), `drive-stalled:reconnect`
    /// while the reconnect stage is stalled: for `/status` `update.flags`.
    public var flags: [String] {
        var flags = steps.filter { $0.stalled != nil }.map { "drive-stalled:\($0.node)" }
        if state == .stalled, reconnect != nil, flags.isEmpty { flags.append("drive-stalled:reconnect") }
        return flags
    }

    /// "driving 12.07.100: 1 of 4 servers done, ums2 installing, next ums3".
    public var summary: String {
        let done = steps.filter { $0.phase == .done }.count
        var text = "\(state == .running ? "driving" : "drive") \(targetVersion): \(done) of \(steps.count) servers done"
        if let index = currentIndex {
            let step = steps[index]
            text += step.phase == .pending ? ", next \(step.node)" : ", \(step.node) \(step.phase.rawValue)"
            if step.phase != .pending, index + 1 < steps.count { text += ", next \(steps[index + 1].node)" }
        } else if let reconnect {
            text += reconnect.finishedAt == nil ? ", reconnecting the update-mode servers" : ", reconnected"
        }
        switch state {
        case .running: break
        case .paused, .stalled, .aborted: text += " (\(state.rawValue)\(reason.map { ": \($0)" } ?? ""))"
        case .completed: text += " (completed)"
        }
        return text
    }

    /// Seconds the rest will take, judged by the steps done so far (the installs and canaries; the
    /// reconnect is not included); nil before a step has finished or once every node is done.
    public func estimatedRemaining(now: Date) -> TimeInterval? {
        let durations = steps.compactMap(\.duration)
        guard state.isActive, let index = currentIndex, !durations.isEmpty else { return nil }
        let average = durations.reduce(0, +) / Double(durations.count)
        let current = steps[index].startedAt.map { now.timeIntervalSince($0) } ?? 0
        let after = steps.count - index - 1
        return max(0, average - current) + average * Double(after)
    }
}

/// One node's step of a driven update.
public struct DriveStep: Sendable, Hashable, Codable {
    /// Where the step stands.
    public enum Phase: String, Sendable, Hashable, Codable, CaseIterable {
        /// Not started.
        case pending
        /// The node takes no new connections: the install is called once its open connections have
        /// closed (after `update.drain_timeout` the balancer closes them, at `update.drain_rate`).
        case draining
        /// The install call is under way (recorded before it is made, so it is never made twice).
        case calling
        /// The installer runs: waiting until the node is back on the target version.
        case installing
        /// Back in update mode: waiting until it has served devices through the balancer.
        case canary
        /// Done: the next node may start.
        case done
    }

    public var node: NodeID
    public var phase: Phase = .pending
    /// Install calls made (more than one only when an operator resumed a stalled step).
    public var attempts = 0
    /// When the step started (its drain before the first install call).
    public var startedAt: Date?
    /// When the node was back on the target version.
    public var backAt: Date?
    public var finishedAt: Date?
    /// When the phase under way must be over: `update.drain_timeout` from the drain (then the
    /// remaining connections are closed), `update.install_timeout` from the install call,
    /// `update.canary_timeout` from the node's return.
    public var deadline: Date?
    /// The node reported `installing` since the call: a return on the old version is a failed install.
    public var sawInstalling = false
    /// The install call's answer, or what else is known about it.
    public var lastAnswer: String?
    /// Why the step is stuck (a deadline missed, a call refused, a failed install); nil when it is not.
    public var stalled: String?
    /// The node's count of served device connections when it came back; nil until known (counts
    /// live in memory: after a restart the gate counts from the first observation).
    public var canaryBaseline: Int?
    /// Device connections served since the node came back.
    public var canaryServed = 0

    public init(node: NodeID) {
        self.node = node
    }

    /// Seconds from the drain to the end of the canary, once done.
    public var duration: TimeInterval? {
        guard let startedAt, let finishedAt else { return nil }
        return finishedAt.timeIntervalSince(startedAt)
    }
}

/// The reconnect stage of a driven update: the existing reconnect (`reconnect.max_unavailable` at
/// a time, paced drains), followed until the run completes.
public struct DriveReconnect: Sendable, Hashable, Codable {
    public var startedAt: Date
    public var finishedAt: Date?

    public init(startedAt: Date) {
        self.startedAt = startedAt
    }
}

/// What a driven update looks at: the nodes, the connections open to each through the balancer,
/// the device connections each has served (completed normally), and the tracked run's state.
public struct DriveObservation: Sendable, Hashable {
    public var nodes: [NodeStatus]
    /// Connections open through the balancer to each node, of every class (none when absent).
    public var open: [NodeID: Int]
    /// Device connections to each node that completed normally with bytes from the node.
    public var served: [NodeID: Int]
    public var run: UpdateRun.State

    public init(
        nodes: [NodeStatus], open: [NodeID: Int] = [:], served: [NodeID: Int] = [:], run: UpdateRun.State
    ) {
        self.nodes = nodes
        self.open = open
        self.served = served
        self.run = run
    }
}
