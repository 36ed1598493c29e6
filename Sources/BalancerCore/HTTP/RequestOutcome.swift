/// How one request on a `by-path` listener ended: the `outcome` of its access-log line and of
/// `ums_balancer_requests_total`.
public enum RequestOutcome: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// The node's answer reached the client whole.
    case answered
    /// No node may take the request (routing refused it, or a limit did): answered `503`.
    case refused
    /// Every node tried failed to connect, or closed without answering: answered `503` or `502`.
    case unavailable
    /// The request broke a limit of the listener (answered `4xx`).
    case rejected
    /// The client went away before its answer was complete.
    case clientAborted = "client-aborted"
    /// The node failed after its answer had begun: the client connection is closed.
    case nodeFailed = "node-failed"
    /// The node switched protocols (`101`): the connection is relayed as bytes from then on.
    case upgraded
    /// The balancer closed it: the node was drained, or the balancer shut down.
    case drained
    case shutdown

    public var description: String { rawValue }

    /// Failures the operator should see at the default log level.
    public var isWarning: Bool {
        switch self {
        case .refused, .unavailable, .nodeFailed: true
        default: false
        }
    }
}
