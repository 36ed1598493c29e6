/// What a simulated UMS Server is doing right now.
public enum NodeMode: String, Sendable, Hashable, CaseIterable {
    /// Serving on the productive database.
    case normal
    /// Updated ahead of the cluster, serving on its own local copy of the database.
    case update
    /// Installing a new version; device and console ports are closed.
    case installing
    /// Switching from its local copy back to the productive database; ports are closed.
    case reconnecting
}

/// Which database a node works on.
public enum DatabaseKind: String, Sendable, Hashable {
    /// The `productive.sqlite` shared by the cluster.
    case productive
    /// The node's own `local-ID.sqlite` copy.
    case localCopy = "local-copy"
}

/// A snapshot of a node's state, as its control port reports it.
public struct NodeStatus: Sendable, Hashable {
    /// The node's id, e.g. `ums1`.
    public var id: String
    /// The node's current mode.
    public var mode: NodeMode
    /// The version the node reports (its old version until an install finishes).
    public var version: NodeVersion
    /// The database the node currently works on.
    public var database: DatabaseKind
    /// How many console logins were accepted while in update mode.
    public var consoleLoginsInUpdateMode: Int

    /// Creates a status snapshot.
    public init(
        id: String, mode: NodeMode, version: NodeVersion, database: DatabaseKind, consoleLoginsInUpdateMode: Int
    ) {
        self.id = id
        self.mode = mode
        self.version = version
        self.database = database
        self.consoleLoginsInUpdateMode = consoleLoginsInUpdateMode
    }
}
