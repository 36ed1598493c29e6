import NIOConcurrencyHelpers
import NIOCore

/// Every client connection the balancer holds, with its listener, so shutdown (and a reload that
/// removes a listener) can wait for them and close the rest. One entry per connection.
public final class ConnectionRegistry: Sendable {
    private struct Entry {
        var member: Member
        var listener: Int
    }

    private enum Member {
        case channel(any Channel)
        #if os(Linux)
        case splice(SpliceHandle)
        #endif

        /// Closes the connection for good (the access log says `shutdown`).
        func close() {
            switch self {
            case .channel(let channel):
                channel.pipeline.fireUserInboundEventTriggered(ConnectionGuard.ShutdownEvent())
                channel.close(promise: nil)
            #if os(Linux)
            case .splice(let handle):
                handle.loop.execute { handle.connection.shutDown() }
            #endif
            }
        }
    }

    private let entries = NIOLockedValueBox<[ObjectIdentifier: Entry]>([:])
    private let lastListenerKey = NIOLockedValueBox(0)

    public init() {}

    /// A key for a newly bound listener's connections, never used before.
    func newListenerKey() -> Int {
        lastListenerKey.withLockedValue {
            $0 += 1
            return $0
        }
    }

    /// Tracks `channel` of the listener `listener` (a `newListenerKey()`) until it closes.
    func register(_ channel: any Channel, listener: Int) {
        let key = ObjectIdentifier(channel)
        entries.withLockedValue { $0[key] = Entry(member: .channel(channel), listener: listener) }
        channel.closeFuture.whenComplete { [entries] _ in
            entries.withLockedValue { _ = $0.removeValue(forKey: key) }
        }
    }

    #if os(Linux)
    /// Tracks a connection of the plain-TCP data path until `unregister` (call on its loop).
    func register(_ connection: SpliceConnection, listener: Int, loop: SpliceLoop) {
        let member = Member.splice(SpliceHandle(connection: connection, loop: loop))
        entries.withLockedValue { $0[ObjectIdentifier(connection)] = Entry(member: member, listener: listener) }
    }

    func unregister(_ connection: SpliceConnection) {
        _ = entries.withLockedValue { $0.removeValue(forKey: ObjectIdentifier(connection)) }
    }
    #endif

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
    func of(_ listener: Int) -> ListenerConnections {
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
            entries.values.filter { listener == nil || $0.listener == listener }.map(\.member)
        }
        for member in members { member.close() }
    }
}

/// The open connections of one listener, as a reload that removes it drains them.
struct ListenerConnections: Sendable {
    let registry: ConnectionRegistry
    let listener: Int

    var count: Int { registry.count(of: listener) }

    func waitUntilEmpty(deadline: ContinuousClock.Instant) async -> Bool {
        await registry.waitUntilEmpty(of: listener, deadline: deadline)
    }

    func closeAll() {
        registry.closeAll(of: listener)
    }
}

#if os(Linux)
/// A splice connection as other threads may hold it: only ever touched on its own loop.
struct SpliceHandle: @unchecked Sendable {
    let connection: SpliceConnection
    let loop: SpliceLoop
}
#endif
