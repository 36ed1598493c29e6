import NIOConcurrencyHelpers

/// Every client connection the balancer holds, with its listener, so shutdown (and a reload that
/// removes a listener) can wait for them and close the rest. One entry per connection, whichever
/// executor runs it.
public final class ConnectionRegistry: Sendable {
    private struct Entry {
        var listener: Int
        /// Closes the connection for good (the access log says `shutdown`); safe from any thread.
        var shutDown: @Sendable () -> Void
    }

    private let entries = NIOLockedValueBox<[ObjectIdentifier: Entry]>([:])
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
    /// `unregister(_:)`; `shutDown` closes it for good, from any thread.
    public func register(_ id: ObjectIdentifier, listener: Int, shutDown: @escaping @Sendable () -> Void) {
        entries.withLockedValue { $0[id] = Entry(listener: listener, shutDown: shutDown) }
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

    fileprivate func closeAll(of listener: Int?) {
        let members = entries.withLockedValue { entries in
            entries.values.filter { listener == nil || $0.listener == listener }.map(\.shutDown)
        }
        for shutDown in members { shutDown() }
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
}
