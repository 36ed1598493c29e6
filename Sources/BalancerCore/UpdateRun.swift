import Foundation

/// A rolling update as the balancer sees it, derived from what the nodes report; persisted so a
/// restarted balancer knows where the update stands.
public struct UpdateRun: Sendable, Hashable, Codable {
    /// Where the update stands.
    public enum State: String, Sendable, Hashable, Codable, CaseIterable {
        /// No run has been recorded.
        case idle
        /// Nodes are being installed; some may run in update mode.
        case inProgress = "in-progress"
        /// The final node completed; update-mode nodes are being told to reconnect.
        case reconnecting
        /// Every node is normal on the target version.
        case completed
        /// A node did not come back from its reconnect in time; an operator can retry.
        case stalled
    }

    public var state: State = .idle
    /// The version every node ran when the run started.
    public var startingVersion: String?
    /// The highest version reported, once it is higher than the starting version.
    public var targetVersion: String?
    /// Nodes not in maintenance that report the target version in normal, update or reconnecting mode.
    public var updated = 0
    /// Nodes not in maintenance.
    public var total = 0
    public var startedAt: Date?
    public var reconnectStartedAt: Date?
    public var finishedAt: Date?
    /// The reconnect of each node that was in update mode when the final node completed.
    public var reconnects: [NodeID: NodeReconnect] = [:]

    public init() {}

    /// An update is under way: what the `freeze` console policy looks at.
    public var isRunning: Bool {
        [.inProgress, .reconnecting, .stalled].contains(state)
    }

    /// "update 12.07.100: 2 of 3 servers updated, reconnecting ums1".
    public var summary: String {
        guard state != .idle else { return "no update recorded" }
        var text = "update \(targetVersion ?? "(version not yet known)"): \(updated) of \(total) servers updated"
        let pending = reconnects.filter { $0.value.phase != .done }.keys.sorted()
        switch state {
        case .reconnecting where !pending.isEmpty: text += ", reconnecting \(pending.joined(separator: ", "))"
        case .stalled: text += ", stalled: \(pending.joined(separator: ", ")) did not reconnect"
        case .completed: text += ", completed"
        default: break
        }
        return text
    }
}

/// One node's way back from update mode to the productive database.
public struct NodeReconnect: Sendable, Hashable, Codable {
    /// Where the node's reconnect stands.
    public enum Phase: String, Sendable, Hashable, Codable {
        /// No new connections; waiting for existing ones to finish or the drain timeout.
        case draining
        /// Ready for a (next) call of its reconnect action at `nextAttemptAt`.
        case due
        /// A call is under way.
        case calling
        /// The node accepted; waiting for it to report normal mode.
        case waiting
        /// Back in normal mode on the productive database.
        case done
        /// Retries exhausted or deadline missed.
        case failed
    }

    public var phase: Phase
    public var drainStartedAt: Date
    public var attempts = 0
    public var nextAttemptAt: Date?
    /// Set at the first call: the node must be back by then.
    public var deadline: Date?
    public var lastAnswer: String?

    public init(phase: Phase, drainStartedAt: Date) {
        self.phase = phase
        self.drainStartedAt = drainStartedAt
    }
}

/// What the I/O layer must do because the update run moved.
public enum UpdateAction: Sendable, Hashable {
    /// The run changed state; `reason` says why, for the journal and the log.
    case stateChanged(from: UpdateRun.State, to: UpdateRun.State, reason: String)
    /// A higher version appeared.
    case targetChanged(String)
    /// Stop new connections to the node before its reconnect.
    case drain(NodeID)
    /// Call the node's reconnect action.
    case callReconnect(NodeID, attempt: Int)
    /// The node is back in normal mode: take the drain off and slow-start it.
    case release(NodeID)
    /// No reconnect action is configured: the operator must reconnect these nodes.
    case reconnectDueForOperator([NodeID])
}

/// The answer of one reconnect call.
public enum ReconnectAnswer: Sendable, Hashable {
    /// 2xx: started, or already reconnecting or normal.
    case accepted(String)
    /// Anything else: an error status, a refused connect, a timeout.
    case rejected(String)
}
