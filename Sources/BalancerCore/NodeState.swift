/// The name of a UMS Server as configured (`nodes[].id`).
public typealias NodeID = String

/// What the node itself reports about its role in an update.
public enum NodeMode: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case normal
    case update
    case installing
    case reconnecting
    case unknown

    public var description: String { rawValue }
}

/// What the balancer's probes observe.
public enum NodeHealth: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case up
    case down

    public var description: String { rawValue }
}

/// What the operator decided, independent of what the node reports.
public enum AdminState: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Takes new connections.
    case active
    /// Takes no new connections; existing ones finish.
    case draining
    /// Out of the cluster: no traffic and not counted in an update run.
    case maintenance

    public var description: String { rawValue }
}

/// The three axes of one node's state, as routing sees them.
public struct NodeStatus: Sendable, Hashable {
    public var id: NodeID
    public var health: NodeHealth
    public var mode: NodeMode
    public var admin: AdminState
    public var version: String?
    /// The balancer itself drained the node for its reconnect (kept apart from the operator's `admin`).
    public var reconnectDrain = false
    /// A driven update drained the node for its install, until it is back on the target version.
    public var installDrain = false

    public init(
        id: NodeID,
        health: NodeHealth = .down,
        mode: NodeMode = .unknown,
        admin: AdminState = .active,
        version: String? = nil
    ) {
        self.id = id
        self.health = health
        self.mode = mode
        self.admin = admin
        self.version = version
    }
}
