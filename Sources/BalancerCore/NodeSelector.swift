/// One eligible node as the selector sees it.
public struct NodeLoad: Sendable, Hashable {
    public var id: NodeID
    public var activeConnections: Int
    /// Share of a full node's traffic, below 1 while the node slow-starts.
    public var weight: Double

    public init(id: NodeID, activeConnections: Int, weight: Double = 1) {
        self.id = id
        self.activeConnections = activeConnections
        self.weight = weight
    }

    /// Load as least-connections compares it: a slow-starting node looks busier than it is.
    var effectiveLoad: Double {
        Double(activeConnections + 1) / max(weight, 0.01)
    }
}

/// Orders eligible nodes into the sequence a new connection tries them in: the first is the
/// choice, the rest are the failover order when a connect fails.
public enum NodeSelector {
    /// The order to try `nodes` in for one connection.
    ///
    /// - Parameters:
    ///   - rotation: a counter the caller advances per connection; it breaks ties for
    ///     least-connections and is the position for round-robin.
    ///   - clientKey: the client address, for `source` affinity.
    public static func order(
        _ nodes: [NodeLoad],
        algorithm: BalanceAlgorithm,
        rotation: Int,
        clientKey: String
    ) -> [NodeID] {
        guard nodes.count > 1 else { return nodes.map(\.id) }
        switch algorithm {
        case .roundRobin:
            return rotated(nodes, by: rotation).map(\.id)
        case .leastConnections:
            // Stable sort of a rotated list: equal loads take turns instead of piling on the first node.
            return rotated(nodes, by: rotation)
                .enumerated()
                .sorted { ($0.element.effectiveLoad, $0.offset) < ($1.element.effectiveLoad, $1.offset) }
                .map(\.element.id)
        case .source:
            // Rendezvous hashing: a client keeps its node while that node stays eligible, and
            // only the clients of a node that leaves move.
            return
                nodes
                .map { (id: $0.id, score: affinityScore(clientKey: clientKey, node: $0.id)) }
                .sorted { ($0.score, $0.id) > ($1.score, $1.id) }
                .map(\.id)
        }
    }

    private static func rotated(_ nodes: [NodeLoad], by rotation: Int) -> [NodeLoad] {
        let start = ((rotation % nodes.count) + nodes.count) % nodes.count
        return Array(nodes[start...] + nodes[..<start])
    }

    /// FNV-1a over client and node, then a final mix; stable across processes and restarts,
    /// so two balancers send a client to the same node.
    static func affinityScore(clientKey: String, node: NodeID) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in clientKey.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        hash = (hash ^ 0xff) &* 0x0000_0100_0000_01b3
        for byte in node.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        hash ^= hash >> 33
        hash = hash &* 0xff51_afd7_ed55_8ccd
        hash ^= hash >> 33
        return hash
    }
}
