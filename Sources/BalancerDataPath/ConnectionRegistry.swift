import BalancerCore
import NIOConcurrencyHelpers

/// Every client connection the balancer holds, with its listener, so shutdown (and a reload that
/// removes a listener) can wait for them and close the rest. One entry per connection, whichever
/// executor runs it.
///
/// A `by-path` client connection is tied to no node: each of its requests goes where routing
/// sends it. What a drain of a node must close there are the node exchanges (a request in flight,
/// an upgraded connection), kept apart from the client connections: they are not counted as
/// connections of their own.
public final class ConnectionRegistry: Sendable {
    private struct Entry {
        var listener: Int
        /// The node the connection is relayed to, once connected.
        var node: NodeID?
        /// Closes the connection for good with the given end (`shutdown`, `drained`); safe from any thread.
        var close: @Sendable (ConnectionEnd) -> Void
        /// Asks a keep-alive connection to close once its request in flight is answered; safe from any thread.
        var quiesce: (@Sendable () -> Void)?
    }

    private struct Exchange {
        var node: NodeID
        var close: @Sendable (ConnectionEnd) -> Void
    }

    private let entries = NIOLockedValueBox<[ObjectIdentifier: Entry]>([:])
    private let exchanges = NIOLockedValueBox<[ObjectIdentifier: Exchange]>([:])
    private let lastListenerKey = NIOLockedValueBox(0)

    public init() {}

    /// A key for a newly bound listener's connections, never used before.
    public func newListenerKey() -> Int {
        lastListenerKey.withLockedValue {
            $0 += 1
            return $0
        }
    }

    /// Tracks the connection `id` of the listener `listener` (a `newListenerKey()`) until
    /// `unregister(_:)`; `close` closes it for good with the end it is given, from any thread.
    public func register(
        _ id: ObjectIdentifier, listener: Int, close: @escaping @Sendable (ConnectionEnd) -> Void,
        quiesce: (@Sendable () -> Void)? = nil
    ) {
        entries.withLockedValue { $0[id] = Entry(listener: listener, close: close, quiesce: quiesce) }
    }

    /// Tracks a node exchange of a `by-path` connection (a request in flight to `node`, an
    /// upgraded connection) until `unregisterExchange(_:)`, so a drain of `node` reaches it.
    public func registerExchange(
        _ id: ObjectIdentifier, node: NodeID, close: @escaping @Sendable (ConnectionEnd) -> Void
    ) {
        exchanges.withLockedValue { $0[id] = Exchange(node: node, close: close) }
    }

    /// The node exchange `id` is over.
    public func unregisterExchange(_ id: ObjectIdentifier) {
        _ = exchanges.withLockedValue { $0.removeValue(forKey: id) }
    }

    /// The connection `id` is now relayed to `node` (nil: between nodes).
    public func relayed(_ id: ObjectIdentifier, to node: NodeID?) {
        entries.withLockedValue { $0[id]?.node = node }
    }

    /// Connections (and node exchanges) currently relayed to `node`.
    public func count(relayedTo node: NodeID) -> Int {
        entries.withLockedValue { $0.values.count { $0.node == node } }
            + exchanges.withLockedValue { $0.values.count { $0.node == node } }
    }

    /// Closes at most `limit` of the connections and node exchanges relayed to `node` (the
    /// access log says `drained`); returns how many it closed. A paced drain calls it once per step.
    @discardableResult
    public func drain(_ node: NodeID, atMost limit: Int = .max) -> Int {
        var members = entries.withLockedValue { entries in
            Array(entries.values.lazy.filter { $0.node == node }.prefix(limit).map(\.close))
        }
        if members.count < limit {
            let more = limit - members.count
            members += exchanges.withLockedValue { exchanges in
                exchanges.values.lazy.filter { $0.node == node }.prefix(more).map(\.close)
            }
        }
        for close in members { close(.drained) }
        return members.count
    }

    /// The connection `id` is closed.
    public func unregister(_ id: ObjectIdentifier) {
        _ = entries.withLockedValue { $0.removeValue(forKey: id) }
    }

    /// Connections currently open.
    public var count: Int {
        entries.withLockedValue { $0.count }
    }

    /// Waits until no connection is open or `deadline` passes; true when none is left.
    public func waitUntilEmpty(deadline: ContinuousClock.Instant) async -> Bool {
        await waitUntilEmpty(of: nil, deadline: deadline)
    }

    /// Closes every open connection at once (the access log says `shutdown`).
    public func closeAll() {
        closeAll(of: nil)
    }

    /// Asks every keep-alive connection to close once its request in flight is answered (an
    /// idle one closes at once): the start of a graceful shutdown.
    public func quiesceAll() {
        quiesceAll(of: nil)
    }

    /// The connections of one listener.
    public func of(_ listener: Int) -> ListenerConnections {
        ListenerConnections(registry: self, listener: listener)
    }

    fileprivate func count(of listener: Int?) -> Int {
        guard let listener else { return count }
        return entries.withLockedValue { $0.values.count { $0.listener == listener } }
    }

    fileprivate func waitUntilEmpty(of listener: Int?, deadline: ContinuousClock.Instant) async -> Bool {
        while count(of: listener) > 0 {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return true
    }

    fileprivate func quiesceAll(of listener: Int?) {
        let members = entries.withLockedValue { entries in
            entries.values.compactMap { listener == nil || $0.listener == listener ? $0.quiesce : nil }
        }
        for quiesce in members { quiesce() }
    }

    fileprivate func closeAll(of listener: Int?) {
        let members = entries.withLockedValue { entries in
            entries.values.filter { listener == nil || $0.listener == listener }.map(\.close)
        }
        for close in members { close(.shutdown) }
    }
}

/// The open connections of one listener, as a reload that removes it drains them.
public struct ListenerConnections: Sendable {
    let registry: ConnectionRegistry
    let listener: Int

    public var count: Int { registry.count(of: listener) }

    public func waitUntilEmpty(deadline: ContinuousClock.Instant) async -> Bool {
        await registry.waitUntilEmpty(of: listener, deadline: deadline)
    }

    public func closeAll() {
        registry.closeAll(of: listener)
    }

    /// Asks its keep-alive connections to close after their request in flight.
    public func quiesceAll() {
        registry.quiesceAll(of: listener)
    }
}
