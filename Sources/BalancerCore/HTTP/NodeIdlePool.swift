/// The idle keep-alive connections to nodes that one event loop keeps for the next request,
/// with no sockets in it: which connection a request takes, which ones to close. The executor
/// holds the sockets and closes what this returns.
///
/// Per key (a node, as one listener reaches it) at most `limit` are kept; the most recently
/// used is taken first (warm, and the least likely to be closed by the node), the oldest is
/// closed first; a connection idle for `idleTimeout` is closed, and so is every connection of a
/// node that may take no traffic any more (down, drained, in maintenance, gone).
public struct NodeIdlePool<Key: Hashable & Sendable, Connection: Hashable & Sendable>: Sendable {
    private struct Idle: Sendable {
        var connection: Connection
        var since: MonotonicInstant
    }

    public var limit: Int
    public var idleTimeout: Duration
    private var idle: [Key: [Idle]] = [:]
    /// Connections kept, over every key.
    public private(set) var count = 0

    public init(limit: Int, idleTimeout: Duration) {
        self.limit = limit
        self.idleTimeout = idleTimeout
    }

    /// Keeps `connection` (just done with a request) for `key`; returns the one to close instead
    /// when the key already holds `limit` (the oldest, or `connection` itself with a limit of 0).
    public mutating func put(_ connection: Connection, for key: Key, now: MonotonicInstant) -> Connection? {
        guard limit > 0 else { return connection }
        let evicted = Self.put(Idle(connection: connection, since: now), into: &idle[key, default: []], limit: limit)
        if evicted == nil { count += 1 }
        return evicted
    }

    /// Changed in place, one lookup: a copy of the list out of the dictionary would be copied again on append.
    private static func put(_ connection: Idle, into list: inout [Idle], limit: Int) -> Connection? {
        list.append(connection)
        return list.count > limit ? list.removeFirst().connection : nil
    }

    /// The most recently kept connection for `key`, taken out of the pool.
    public mutating func take(for key: Key) -> Connection? {
        // An emptied list stays (requests take and give back all the time; its storage is
        // reused); the sweep drops empty lists.
        guard let last = idle[key]?.popLast() else { return nil }
        count -= 1
        return last.connection
    }

    /// Forgets `connection` (it closed while idle); true when it was kept.
    @discardableResult
    public mutating func remove(_ connection: Connection, for key: Key) -> Bool {
        guard let index = idle[key]?.firstIndex(where: { $0.connection == connection }) else { return false }
        idle[key]!.remove(at: index)
        if idle[key]!.isEmpty { idle[key] = nil }
        count -= 1
        return true
    }

    /// Takes out and returns what to close at `now`: connections idle for `idleTimeout`, and
    /// every connection of a key `keeps` says no to.
    public mutating func sweep(now: MonotonicInstant, keeps: (Key) -> Bool) -> [Connection] {
        var closing: [Connection] = []
        for (key, list) in idle {
            guard !list.isEmpty, keeps(key) else {
                closing += list.map(\.connection)
                idle[key] = nil
                continue
            }
            let expired = list.prefix { now - $0.since >= idleTimeout }
            guard !expired.isEmpty else { continue }
            closing += expired.map(\.connection)
            let rest = list.dropFirst(expired.count)
            idle[key] = rest.isEmpty ? nil : Array(rest)
        }
        count -= closing.count
        return closing
    }

    /// Whether a node in state `status` keeps its idle connections: it may take traffic of some class.
    public static func keepsConnections(to status: NodeStatus?) -> Bool {
        guard let status else { return false }
        return Eligibility.isEligible(status, for: .device)
    }
}
