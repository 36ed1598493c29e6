import BalancerCore
import NIOConcurrencyHelpers

/// Every client connection the balancer holds, with its listener, so shutdown (and a reload that
/// removes a listener) can wait for them and close the rest. One entry per connection, whichever
/// executor runs it. A wait for "no connection left" is woken by the close of the last one.
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

    private struct State {
        var entries: [ObjectIdentifier: Entry] = [:]
        var exchanges: [ObjectIdentifier: Exchange] = [:]
        /// Open connections per listener, kept as they come and go so a close checks waiters in O(1).
        var perListener: [Int: Int] = [:]
        /// Waits for a listener's (or, with nil, every) connection to close.
        var waiters: [Int: (listener: Int?, continuation: CheckedContinuation<Void, Never>)] = [:]
        var nextWaiter = 0

        func count(of listener: Int?) -> Int {
            guard let listener else { return entries.count }
            return perListener[listener] ?? 0
        }

        /// Removes and returns the waiters whose connections are all closed.
        mutating func emptied() -> [CheckedContinuation<Void, Never>] {
            guard !waiters.isEmpty else { return [] }
            let done = waiters.filter { count(of: $0.value.listener) == 0 }
            for key in done.keys { waiters[key] = nil }
            return done.values.map(\.continuation)
        }
    }

    private let state = NIOLockedValueBox(State())
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
        state.withLockedValue { state in
            state.entries[id] = Entry(listener: listener, close: close, quiesce: quiesce)
            state.perListener[listener, default: 0] += 1
        }
    }

    /// Tracks a node exchange of a `by-path` connection (a request in flight to `node`, an
    /// upgraded connection) until `unregisterExchange(_:)`, so a drain of `node` reaches it.
    public func registerExchange(
        _ id: ObjectIdentifier, node: NodeID, close: @escaping @Sendable (ConnectionEnd) -> Void
    ) {
        state.withLockedValue { $0.exchanges[id] = Exchange(node: node, close: close) }
    }

    /// The node exchange `id` is over.
    public func unregisterExchange(_ id: ObjectIdentifier) {
        _ = state.withLockedValue { $0.exchanges.removeValue(forKey: id) }
    }

    /// The connection `id` is now relayed to `node` (nil: between nodes).
    public func relayed(_ id: ObjectIdentifier, to node: NodeID?) {
        state.withLockedValue { $0.entries[id]?.node = node }
    }

    /// Connections (and node exchanges) currently relayed to `node`.
    public func count(relayedTo node: NodeID) -> Int {
        state.withLockedValue { state in
            state.entries.values.count { $0.node == node } + state.exchanges.values.count { $0.node == node }
        }
    }

    /// Closes at most `limit` of the connections and node exchanges relayed to `node` (the
    /// access log says `drained`); returns how many it closed. A paced drain calls it once per step.
    @discardableResult
    public func drain(_ node: NodeID, atMost limit: Int = .max) -> Int {
        let members = state.withLockedValue { state in
            let connections = state.entries.values.lazy.filter { $0.node == node }.map(\.close)
            let exchanges = state.exchanges.values.lazy.filter { $0.node == node }.map(\.close)
            return Array((Array(connections) + Array(exchanges)).prefix(limit))
        }
        for close in members { close(.drained) }
        return members.count
    }

    /// The connection `id` is closed.
    public func unregister(_ id: ObjectIdentifier) {
        let emptied = state.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
            guard let entry = state.entries.removeValue(forKey: id) else { return [] }
            state.perListener[entry.listener, default: 1] -= 1
            if state.perListener[entry.listener] == 0 { state.perListener[entry.listener] = nil }
            return state.emptied()
        }
        for waiter in emptied { waiter.resume() }
    }

    /// Connections currently open.
    public var count: Int {
        state.withLockedValue { $0.entries.count }
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
        state.withLockedValue { $0.count(of: listener) }
    }

    /// Returns when the last connection (of `listener`, or of all) closes, the deadline passes, or
    /// the task is cancelled; true when none is left.
    fileprivate func waitUntilEmpty(of listener: Int?, deadline: ContinuousClock.Instant) async -> Bool {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.emptied(of: listener) }
            group.addTask { try? await Task.sleep(until: deadline, clock: .continuous) }
            await group.next()
            group.cancelAll()
        }
        return count(of: listener) == 0
    }

    private func emptied(of listener: Int?) async {
        let key = state.withLockedValue { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let empty = state.withLockedValue { state in
                    // Cancelled before it could wait: the handler below found nothing to resume.
                    guard state.count(of: listener) > 0, !Task.isCancelled else { return true }
                    state.waiters[key] = (listener, continuation)
                    return false
                }
                if empty { continuation.resume() }
            }
        } onCancel: {
            state.withLockedValue { $0.waiters.removeValue(forKey: key) }?.continuation.resume()
        }
    }

    fileprivate func quiesceAll(of listener: Int?) {
        let members = state.withLockedValue { state in
            state.entries.values.compactMap { listener == nil || $0.listener == listener ? $0.quiesce : nil }
        }
        for quiesce in members { quiesce() }
    }

    fileprivate func closeAll(of listener: Int?) {
        let members = state.withLockedValue { state in
            state.entries.values.filter { listener == nil || $0.listener == listener }.map(\.close)
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
