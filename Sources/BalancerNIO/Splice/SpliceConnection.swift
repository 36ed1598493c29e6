#if os(Linux)
import BalancerCore
import CBalancerLinux
import Glibc
import NIOCore

/// One socket of a spliced connection, as its loop last saw it.
final class SpliceSide {
    let fd: CInt
    /// An edge said there is something to read (bytes, EOF or an error) that was not read yet.
    var readable = false
    /// EPOLLRDHUP: the peer sent its FIN, so a short read has read everything before it.
    var peerShutDown = false
    /// The peer reset or errored: nothing more will be read, and writes fail.
    var hungUp = false
    var inputClosed = false
    var outputClosed = false
    var connected: Bool
    /// Bytes for this socket it could not take yet; reading from its partner waits until they are out.
    private(set) var pending: [UInt8] = []
    private var pendingStart = 0
    var bytesRead = 0
    /// Why this socket failed (errno), once it has.
    var failure: CInt?
    /// How much one read from this socket takes: grows while reads fill up and the partner takes
    /// everything (bulk transfers make fewer, larger calls), shrinks when the partner cannot keep
    /// up, so a stalled connection holds a small remainder, not a whole large read.
    private(set) var readSize = SpliceSide.smallestRead

    static let smallestRead = 16 * 1024

    init(fd: CInt, connected: Bool) {
        self.fd = fd
        self.connected = connected
    }

    var hasPending: Bool { pendingStart < pending.count }

    func note(_ events: UInt32) {
        if events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
            readable = true
        }
        if events & (EPOLLRDHUP.rawValue | EPOLLHUP.rawValue) != 0 { peerShutDown = true }
        if events & (EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 { hungUp = true }
    }

    /// Writes `count` bytes at `bytes`, keeping what the socket cannot take; false when it failed.
    func send(_ bytes: UnsafeRawPointer, count: Int) -> Bool {
        var sent = 0
        while sent < count {
            let written = Glibc.send(fd, bytes + sent, count - sent, CInt(MSG_NOSIGNAL))
            if written > 0 {
                sent += written
            } else if errno == EINTR {
                continue
            } else if errno == EAGAIN {
                break
            } else {
                failure = errno
                return false
            }
        }
        if sent < count {
            pending = Array(UnsafeRawBufferPointer(start: bytes + sent, count: count - sent))
            pendingStart = 0
        }
        return true
    }

    /// Writes what is pending; false when the socket failed.
    func flush() -> Bool {
        while hasPending {
            let written = pending.withUnsafeBytes { bytes in
                Glibc.send(fd, bytes.baseAddress! + pendingStart, pending.count - pendingStart, CInt(MSG_NOSIGNAL))
            }
            if written > 0 {
                pendingStart += written
            } else if errno == EINTR {
                continue
            } else if errno == EAGAIN {
                return true
            } else {
                failure = errno
                return false
            }
        }
        pending = []
        pendingStart = 0
        return true
    }

    func adjustReadSize(read: Int, asked: Int, allSent: Bool, limit: Int) {
        if !allSent {
            readSize = max(asked / 2, Self.smallestRead)
        } else if read == asked {
            readSize = min(asked * 2, limit)
        }
    }

    /// Queues `bytes` behind what is pending (a replay to a new node).
    func queue(_ bytes: [UInt8]) {
        pending.append(contentsOf: bytes)
    }
}

/// A client connection of a plain TCP listener and the node connection it is spliced to: the same
/// behaviour as `ProxyHandler` and `GlueHandler` on NIO (nodes tried in order, the client's bytes
/// not read before a node is connected, a node that closes without answering replaced by the
/// next one, EOFs passed on as half-closes, at most one read's worth of buffering per direction, the idle
/// timeout, the linger limit for queued bytes), written against the socket calls directly.
final class SpliceConnection {
    private unowned let loop: SpliceLoop
    private let listener: ListenerContext
    let listenerKey: Int
    private let record: ConnectionRecord
    private let registry: ConnectionRegistry
    private let client: SpliceSide
    private var node: SpliceSide?
    private var target: NodeTarget?
    private var remaining: ArraySlice<NodeTarget> = []
    private var failures: [String] = []
    /// What the client sent the current node before the node answered; `nil` once it answered
    /// or the client sent more than `ProxyHandler.replayLimit`.
    private var replay: [UInt8]? = []
    private var connectDeadline: NIODeadline?
    private var lingerDeadline: NIODeadline?
    private var lastActivity: NIODeadline
    private var finished = false
    private let idleTimeout: TimeAmount
    private let connectTimeout: TimeAmount
    /// A `by-sni` connection before its ClientHello is complete.
    private var classifying: Classifying?

    private struct Classifying {
        var rules: SNIRules
        var deadline: NIODeadline
        var timeout: TimeAmount
        /// What the client sent so far; the node gets all of it first.
        var hello: [UInt8] = []
    }

    private init(
        client: CInt, listener: ListenerContext, listenerKey: Int, record: ConnectionRecord,
        registry: ConnectionRegistry, loop: SpliceLoop
    ) {
        self.client = SpliceSide(fd: client, connected: true)
        self.listener = listener
        self.listenerKey = listenerKey
        self.record = record
        self.registry = registry
        self.loop = loop
        self.lastActivity = loop.now
        self.idleTimeout = TimeAmount(listener.timeouts.idle)
        self.connectTimeout = TimeAmount(listener.timeouts.connect)
    }

    /// The shortest timeout this connection runs under: how often the loop must look at it.
    var shortestTimeout: TimeAmount { min(idleTimeout, connectTimeout, classifying?.timeout ?? idleTimeout) }

    /// Takes a freshly accepted client socket: routes it (a `by-sni` one once its ClientHello is
    /// in) and connects to its first node.
    static func start(
        client fd: CInt, peer: SocketAddress?, listener: ListenerContext, listenerKey: Int,
        registry: ConnectionRegistry, loop: SpliceLoop, handOver: (CInt, Int) -> Void
    ) {
        guard listener.directory.everyNodeHasAnAddress else {
            // A node named by host name needs a resolver: NIO has one, this path does not.
            handOver(fd, listenerKey)
            return
        }
        let record = ConnectionRecord(
            logger: listener.accessLogger, client: peer, trafficClass: listener.configuration.initialClass,
            metrics: listener.metrics)
        let connection = SpliceConnection(
            client: fd, listener: listener, listenerKey: listenerKey, record: record, registry: registry, loop: loop)
        if case .bySNI(let rules) = listener.configuration.classification {
            let timeout = TimeAmount(listener.configuration.handshakeTimeout)
            connection.classifying = Classifying(rules: rules, deadline: loop.now + timeout, timeout: timeout)
        }
        loop.adopt(connection)
        registry.register(connection, listener: listenerKey, loop: loop)
        guard
            loop.watch(
                fd, for: .client(connection),
                events: EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue)
        else {
            record.end("error", reason: "cannot watch the client socket: \(String(cString: strerror(errno)))")
            connection.finish()
            return
        }
        // A by-sni connection waits for its first bytes (watching reports them if they are there).
        if connection.classifying == nil { connection.route(record.trafficClass) }
    }

    private func route(_ trafficClass: TrafficClass) {
        record.trafficClass = trafficClass
        let algorithm = listener.configuration.algorithm(for: trafficClass)
        // Only affinity needs the client's address as text; the other algorithms skip the conversion.
        let clientKey = algorithm == .source ? record.client?.ipAddress ?? "unknown" : ""
        switch listener.directory.route(
            trafficClass, algorithm: algorithm, clientKey: clientKey, port: listener.configuration.backendPort)
        {
        case .refused(let refusal):
            listener.refuse(record, refusal)
            finish()
        case .targets(let targets):
            remaining = targets[...]
            dialNext()
        }
    }

    // MARK: - Classifying

    /// Reads the ClientHello without answering it: the node gets every byte and completes the
    /// handshake with the client itself.
    private func classify() {
        guard var state = classifying else { return }
        // Held outside while it grows, so appending does not copy the bytes.
        classifying = nil
        let buffer = loop.buffer
        while client.readable, client.failure == nil, !client.inputClosed {
            // Never more than one byte past the largest ClientHello: that is enough to reject it.
            let size = min(buffer.count, ClientHello.maximumSize + 1 - state.hello.count)
            guard size > 0 else { break }
            let count = Glibc.read(client.fd, buffer.baseAddress, size)
            if count > 0 {
                lastActivity = loop.now
                client.bytesRead += count
                state.hello.append(contentsOf: UnsafeRawBufferPointer(start: buffer.baseAddress, count: count))
            } else if count == 0 {
                client.inputClosed = true
            } else if errno == EAGAIN {
                client.readable = false
            } else if errno != EINTR {
                client.failure = errno
            }
        }
        switch ClientHello.parse(state.hello) {
        case .needMoreData:
            guard client.inputClosed || client.failure != nil else {
                classifying = state
                return
            }
            record.end("client-aborted", reason: "client closed before a node was connected")
            finish()
        case .invalid(let why):
            rejectHandshake(reason: why.handshakeFailure.label, detail: why.description)
        case .complete(let serverName):
            record.classified = "sni=\(serverName ?? "-")"
            // The node gets the ClientHello (and anything after it) first, as a replay would.
            replay = state.hello
            route(state.rules.classify(serverName))
        }
    }

    private func rejectHandshake(reason: String, detail: String) {
        classifying = nil  // the handshake timeout may call this while it is still set
        record.handshakeFailed(listener: listener.configuration.name, reason: reason, detail: detail)
        finish()
    }

    // MARK: - Events

    func clientEvent(_ events: UInt32) {
        client.note(events)
        if classifying != nil {
            classify()
            return
        }
        if node?.connected != true, client.hungUp {
            // Gone before a node was connected: there is nobody to tell.
            record.end("client-aborted", reason: "client closed before a node was connected")
            finish()
            return
        }
        pump()
    }

    func nodeEvent(_ events: UInt32) {
        guard let node else { return }
        node.note(events)
        if !node.connected {
            // A failed connect reports an error or hang-up; writable alone means connected (no
            // SO_ERROR call needed on the way that matters).
            if events & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 {
                var error: CInt = 0
                var length = socklen_t(MemoryLayout<CInt>.size)
                getsockopt(node.fd, SOL_SOCKET, SO_ERROR, &error, &length)
                connectFailed(error == 0 ? "connection closed" : Self.describe(error))
                return
            }
            guard events & EPOLLOUT.rawValue != 0 else { return }
            node.connected = true
            node.hungUp = false
            connectDeadline = nil
            record.node = target?.node
        }
        pump()
    }

    /// The balancer is closing this connection for good.
    func shutDown() {
        record.end("shutdown")
        finish()
    }

    /// Called by the loop's sweep: connect timeout, linger limit, idle timeout.
    func checkDeadlines() {
        guard !finished else { return }
        let now = loop.now
        if let classifying, now >= classifying.deadline {
            rejectHandshake(reason: "timeout", detail: "no complete ClientHello within \(classifying.timeout)")
        } else if let connectDeadline, now >= connectDeadline {
            connectFailed("connect timed out")
        } else if let lingerDeadline, now >= lingerDeadline {
            finish()
        } else if now - lastActivity >= idleTimeout {
            record.end("idle-timeout")
            finish()
        }
    }

    // MARK: - Moving bytes

    /// Moves what can be moved both ways until nothing changes, then settles how the connection goes on.
    private func pump() {
        guard let node, node.connected else { return }
        var moved = true
        while moved, !finished, self.node === node {
            moved = false
            if node.hasPending, !node.flush() { moved = true }
            if client.hasPending, !client.flush() { moved = true }
            if forward(from: client, to: node) { moved = true }
            if forward(from: node, to: client) { moved = true }
            if settle(node) { moved = true }
        }
    }

    /// Reads from `source` while `destination` takes everything; true when anything happened.
    private func forward(from source: SpliceSide, to destination: SpliceSide) -> Bool {
        var moved = false
        let buffer = loop.buffer
        while source.readable, !source.inputClosed, source.failure == nil, destination.failure == nil,
            !destination.hasPending, lingerDeadline == nil
        {
            let size = min(source.readSize, buffer.count)
            let count = Glibc.read(source.fd, buffer.baseAddress, size)
            if count > 0 {
                moved = true
                lastActivity = loop.now
                source.bytesRead += count
                if source === client {
                    keepForReplay(count)
                } else if source.bytesRead == count {
                    // The node answered: it will not be replaced, so the replay is not needed.
                    replay = nil
                }
                if !destination.send(buffer.baseAddress!, count: count) { break }
                source.adjustReadSize(read: count, asked: size, allSent: !destination.hasPending, limit: buffer.count)
                // A short read emptied the socket; after a FIN that is the EOF too (saves a read).
                // After a reset or error the next read says which it was.
                if count < size, !source.hungUp {
                    if source.peerShutDown { source.inputClosed = true } else { source.readable = false }
                }
            } else if count == 0 {
                source.inputClosed = true
                source.readable = false
                moved = true
            } else if errno == EAGAIN {
                source.readable = false
            } else if errno != EINTR {
                source.failure = errno
                source.readable = false
                moved = true
            }
        }
        // Pass the EOF on once everything before it is out, unless a node that said nothing is
        // about to be replaced.
        if source.inputClosed, !destination.outputClosed, !destination.hasPending, destination.failure == nil,
            !(source !== client && mayRedispatch(from: source))
        {
            destination.outputClosed = true
            // With both inputs closed the connection closes next, which sends the FIN anyway.
            if !destination.inputClosed { Glibc.shutdown(destination.fd, CInt(SHUT_WR)) }
            moved = true
        }
        return moved
    }

    private func keepForReplay(_ count: Int) {
        guard replay != nil else { return }
        if replay!.count + count > ProxyHandler.replayLimit {
            replay = nil
        } else {
            replay!.append(contentsOf: UnsafeRawBufferPointer(start: loop.buffer.baseAddress, count: count))
        }
    }

    /// A node that closed or failed before its first byte can hand its client to the next node.
    private func mayRedispatch(from node: SpliceSide) -> Bool {
        node.bytesRead == 0 && replay != nil && !remaining.isEmpty && client.failure == nil
    }

    /// Decides what a finished or failed side means for the connection; true when it changed something.
    private func settle(_ node: SpliceSide) -> Bool {
        if node.inputClosed || node.failure != nil, mayRedispatch(from: node) {
            redispatch()
            return false
        }
        if lingerDeadline != nil {
            // One side failed; the other is taking what was handed to it before.
            let survivor = client.failure == nil ? client : node
            guard !survivor.hasPending || survivor.failure != nil else { return false }
            finish()
            return true
        }
        if let failure = client.failure ?? node.failure {
            record.end(
                "error", reason: "\(client.failure != nil ? "client" : "node"): \(String(cString: strerror(failure)))")
            let survivor = client.failure == nil ? client : node
            if survivor.hasPending, survivor.failure == nil {
                // The survivor gets the idle timeout to take what was already handed to it.
                lingerDeadline = loop.now + idleTimeout
                return false
            }
            finish()
            return true
        }
        if client.inputClosed, node.inputClosed, !client.hasPending, !node.hasPending {
            finish()
            return true
        }
        return false
    }

    // MARK: - Connecting

    private func dialNext() {
        guard let next = remaining.first else {
            giveUp()
            return
        }
        remaining = remaining.dropFirst()
        target = next
        guard let address = next.address else {
            // Renamed to a host name by a reload since this connection was accepted.
            failures.append("\(next.node) is named by host name")
            dialNext()
            return
        }
        listener.directory.connectionOpened(to: next.node)
        let fd = socket(
            address.protocol.rawValue, CInt(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            connectFailed(String(cString: strerror(errno)))
            return
        }
        var one: CInt = 1
        setsockopt(fd, CInt(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<CInt>.size))
        let node = SpliceSide(fd: fd, connected: false)
        self.node = node
        // A client that already half-closed gets its EOF passed on after the replay (see `forward`).
        if let replay, !replay.isEmpty { node.queue(replay) }
        let connected = address.withSockAddr { Glibc.connect(fd, $0, socklen_t($1)) }
        guard connected == 0 || errno == EINPROGRESS else {
            connectFailed(Self.describe(errno))
            return
        }
        guard
            loop.watch(fd, for: .node(self), events: EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue)
        else {
            connectFailed("cannot watch the socket: \(String(cString: strerror(errno)))")
            return
        }
        connectDeadline = loop.now + connectTimeout
    }

    private func connectFailed(_ reason: String) {
        if let target {
            failures.append("\(target.node) \(reason)")
            record.connectFailed(to: target.node, error: reason)
        }
        dropNode()
        dialNext()
    }

    private func redispatch() {
        guard let failed = target else { return }
        failures.append("\(failed.node) closed without answering")
        record.handedOn(from: failed.node)
        dropNode()
        dialNext()
    }

    private func giveUp() {
        listener.giveUp(record, failures: failures)
        finish()
    }

    /// Closes the node socket and gives its connection count back.
    private func dropNode() {
        connectDeadline = nil
        guard let node else { return }
        record.splicedBytesOut += node.bytesRead
        loop.forget(node.fd)
        Glibc.close(node.fd)
        self.node = nil
        if let target { listener.directory.connectionClosed(from: target.node) }
    }

    /// Closes both sockets and writes the access-log line.
    func finish() {
        guard !finished else { return }
        finished = true
        dropNode()
        loop.forget(client.fd)
        Glibc.close(client.fd)
        record.splicedBytesIn += client.bytesRead
        loop.release(self)
        registry.unregister(self)
        record.log()
    }

    private static func describe(_ error: CInt) -> String {
        error == ECONNREFUSED ? "connection refused" : String(cString: strerror(error))
    }
}
#endif
