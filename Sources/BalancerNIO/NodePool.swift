import BalancerCore
import BalancerDataPath
import NIOCore
import NIOSSL

/// A node as one `by-path` listener context reaches it: what a pooled connection may be reused for.
struct NodePoolKey: Hashable, Sendable {
    var node: NodeID
    var address: SocketAddress
    /// The listener context's backend TLS context: after a reload, new requests use new connections.
    var tls: ObjectIdentifier

    // Looked up per request: the node and the TLS context tell keys apart but for a node whose
    // address changed, so hashing the address too buys nothing.
    func hash(into hasher: inout Hasher) {
        hasher.combine(node)
        hasher.combine(tls)
    }
}

/// One event loop's idle keep-alive connections to the nodes of one `by-path` listener context:
/// executes `NodeIdlePool` (which connection to take, which to close) with the sockets, and
/// sweeps while it holds any. Loop-bound.
final class NodePool {
    private let eventLoop: any EventLoop
    private let directory: NodeDirectory
    private var pool: NodeIdlePool<NodePoolKey, ObjectIdentifier>
    private var connections: [ObjectIdentifier: NodeHTTPHandler] = [:]
    private var sweep: Scheduled<Void>?
    private let sweepInterval: TimeAmount

    init(eventLoop: any EventLoop, directory: NodeDirectory, settings: HTTPSettings) {
        self.eventLoop = eventLoop
        self.directory = directory
        self.pool = NodeIdlePool(limit: settings.nodeIdleConnections, idleTimeout: settings.nodeIdleTimeout)
        self.sweepInterval = TimeAmount(BalancerDataPath.sweepInterval(for: settings.nodeIdleTimeout))
    }

    /// Idle connections held now.
    var count: Int { pool.count }

    /// An idle connection to `key`'s node that is still open, taken out of the pool.
    func take(_ key: NodePoolKey) -> NodeHTTPHandler? {
        while let id = pool.take(for: key) {
            guard let connection = connections.removeValue(forKey: id) else { continue }
            connection.pool = nil
            if connection.isOpen { return connection }
            connection.close()
        }
        return nil
    }

    /// Keeps `connection` (its request done, the node keeping it alive) for the next request.
    func put(_ connection: NodeHTTPHandler) {
        let id = ObjectIdentifier(connection)
        if let evicted = pool.put(id, for: connection.key, now: NIODeadline.now().monotonic) {
            if evicted == id {
                connection.close()
                return
            }
            connections.removeValue(forKey: evicted)?.close()
        }
        connections[id] = connection
        connection.pool = self
        if sweep == nil { schedule() }
    }

    /// An idle connection closed (the node's keep-alive timeout, say): forgotten.
    func closed(_ connection: NodeHTTPHandler) {
        let id = ObjectIdentifier(connection)
        guard connections.removeValue(forKey: id) != nil else { return }
        pool.remove(id, for: connection.key)
    }

    private func schedule() {
        sweep = eventLoop.assumeIsolated().scheduleTask(in: sweepInterval) {
            self.sweep = nil
            self.sweepNow()
        }
    }

    private func sweepNow() {
        let directory = self.directory
        let closing = pool.sweep(now: NIODeadline.now().monotonic) { key in
            NodeIdlePool<NodePoolKey, ObjectIdentifier>.keepsConnections(to: directory.status(of: key.node))
        }
        for id in closing { connections.removeValue(forKey: id)?.close() }
        if pool.count > 0 { schedule() }
    }
}

@available(*, unavailable)
extension NodePool: Sendable {}

/// One `NodePool` per event loop of a group, made up front with the listener context, so that
/// finding a connection's pool takes no lock.
final class NodePools: Sendable {
    // Each pool is only ever used on its own event loop; the table itself never changes.
    private struct Slot: @unchecked Sendable {
        let pool: NodePool
    }

    private let slots: [ObjectIdentifier: Slot]

    init(group: any EventLoopGroup, directory: NodeDirectory, settings: HTTPSettings) {
        var slots: [ObjectIdentifier: Slot] = [:]
        for eventLoop in group.makeIterator() {
            slots[ObjectIdentifier(eventLoop)] = Slot(
                pool: NodePool(eventLoop: eventLoop, directory: directory, settings: settings))
        }
        self.slots = slots
    }

    /// The pool of `eventLoop` (a loop of the group); call on that loop.
    func pool(for eventLoop: any EventLoop) -> NodePool? {
        eventLoop.assertInEventLoop()
        return slots[ObjectIdentifier(eventLoop)]?.pool
    }
}
