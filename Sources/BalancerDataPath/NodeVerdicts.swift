import BalancerCore

/// What one connection tells passive health about its nodes: each failure the machine recorded,
/// once, and the first answer of a node that has failures on record (so a healthy node's
/// connections take no lock for it).
public struct NodeVerdicts {
    private var reported = 0
    private var answerDue: NodeID?

    public init() {}

    /// Reports the failures `machine` recorded since the last call.
    public mutating func report(_ machine: ConnectionMachine<NodeTarget>, to listener: ListenerContext) {
        let failures = machine.failures
        guard failures.count > reported else { return }
        for failure in failures[reported...] { listener.nodeFailed(failure) }
        reported = failures.count
    }

    /// The connection is now relayed to `target`.
    public mutating func connected(to target: NodeTarget) {
        answerDue = target.reportsAnswer ? target.node : nil
    }

    /// The current node sent bytes: if it had failures on record, they are forgiven.
    public mutating func nodeSpoke(to listener: ListenerContext) {
        guard let node = answerDue else { return }
        answerDue = nil
        listener.directory.nodeAnswered(node)
    }
}
