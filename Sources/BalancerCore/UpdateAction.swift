/// What the I/O layer must do because the update run moved.
public enum UpdateAction: Sendable, Hashable {
    /// The run changed state; `reason` says why, for the journal and the log. A change to `idle`
    /// is a run that ended: `UpdateRun.lastRun` holds how.
    case stateChanged(from: UpdateRun.State, to: UpdateRun.State, reason: String)
    /// A higher version appeared.
    case targetChanged(String)
    /// Stop new connections to the node before its reconnect.
    case drain(NodeID)
    /// Close the node's remaining connections, `perSecond` at a time (`update.drain_rate`).
    case closeConnections(NodeID, perSecond: Int)
    /// Call the node's reconnect action, giving up on this call after `timeout` (never later
    /// than the node's reconnect deadline).
    case callReconnect(NodeID, attempt: Int, timeout: Duration)
    /// The node is back in normal mode: take the drain off and slow-start it.
    case release(NodeID)
    /// No reconnect action is configured: the operator must reconnect these nodes.
    case reconnectDueForOperator([NodeID])
    /// Something became overdue; say it once, loudly.
    case flagRaised(UpdateFlag, reason: String)
    /// A flag no longer applies.
    case flagCleared(UpdateFlag, reason: String)
}

/// The answer of one reconnect call.
public enum ReconnectAnswer: Sendable, Hashable {
    /// 2xx: started, or already reconnecting or normal.
    case accepted(String)
    /// Anything else: an error status, a refused connect, a timeout.
    case rejected(String)
}
