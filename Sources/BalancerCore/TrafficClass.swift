/// The kind of traffic a connection carries, which decides the nodes it may reach.
public enum TrafficClass: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// IGEL OS devices: fine on nodes in normal or update mode.
    case device
    /// Console, Web App and REST API logins: only on nodes in normal mode.
    case console

    public var description: String { rawValue }
}

/// How a listener decides the traffic class of each connection.
public enum ListenerClassification: Sendable, Hashable {
    /// Every connection has the same class.
    case fixed(TrafficClass)
    /// Decided per connection from the TLS ClientHello's server name, without terminating TLS.
    case bySNI(SNIRules)
    /// Decided per connection from the HTTP request path, after terminating TLS here.
    case byPath(PathListenerSettings)
}

/// How a listener picks among the eligible nodes.
public enum BalanceAlgorithm: String, Sendable, Hashable, CaseIterable {
    /// The node with the fewest active connections; ties rotate.
    case leastConnections = "least-connections"
    /// Each node in turn.
    case roundRobin = "round-robin"
    /// The same client address reaches the same node while it is eligible.
    case source
}
