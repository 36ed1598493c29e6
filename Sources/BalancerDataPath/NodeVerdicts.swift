import BalancerCore

/// What one connection tells passive health about its nodes: each failure the machine holds
/// against a node (`blamed`), once, and the first answer of a node that has failures on record
/// (so a healthy node's connections take no lock for it).
public struct NodeVerdicts {
    /// How many of the machine's `blamed` were reported.
    public private(set) var reported = 0
    private var answerDue: NodeID?

    public init() {}

    /// Reports the failures `machine` held against nodes since the last call.
    public mutating func report(_ machine: ConnectionMachine<NodeTarget>, to listener: ListenerContext) {
        let blamed = machine.blamed
        guard blamed.count > reported else { return }
        for failure in blamed[reported...] { listener.nodeFailed(failure) }
        reported = blamed.count
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
