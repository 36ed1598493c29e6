#if os(Linux)
import BalancerCore
import BalancerDataPath
import CBalancerLinux
import Glibc
import NIOCore

/// A client connection of a listener that terminates nothing, and the node connection it is
/// relayed to, on one relay loop: the epoll executor of `ConnectionMachine`. It moves the bytes
/// and reports what its two sockets do; the machine decides everything else.
final class RelayConnection {
    // Unowned without reference counting: a connection lives in its loop's table and is only
    // touched on the loop's thread (or through a handle, which holds the loop), so the loop always
    // outlives it; a counted reference cost a retain and release on every event.
    private unowned(unsafe) let loop: RelayLoop
    private let listener: ListenerContext
    let listenerKey: Int
    private let log: ConnectionLog
    private let registry: ConnectionRegistry
    private let client: RelaySide
    private var node: RelaySide?
    /// The node `node` is counted against (least connections), until it is dropped.
    private var countedNode: NodeID?
    private var machine: ConnectionMachine<NodeTarget>
    /// What the current node must get first if it is replaced: the ClientHello a `by-sni`
    /// listener read, then what the client sent — kept while the machine says so.
    private var replay: [UInt8] = []
    private var finished = false
    /// Counted in by the listener's limits (released when it ends).
    private var admitted = false
    private var verdicts = NodeVerdicts()
    private var headerDropped = false
    /// The loop holds it for a half-close after its next poll.
    private var halfCloseQueued = false
    /// `pump` is on the stack: actions that need it only ask it to go round once more.
    private var pumping = false
    private var pumpAgain = false

    private init(
        client: CInt, peer: SocketAddress?, listener: ListenerContext, listenerKey: Int,
        registry: ConnectionRegistry, loop: RelayLoop
    ) {
        self.client = RelaySide(fd: client, connected: true)
        self.listener = listener
        self.listenerKey = listenerKey
        self.log = ConnectionLog(client: peer, listener: listener, started: loop.now)
        self.registry = registry
        self.loop = loop
        self.machine = ConnectionMachine(
            settings: listener.settings, now: loop.now.monotonic, initialClass: listener.configuration.initialClass,
            peer: listener.settings.proxyProtocolFrom == nil ? nil : peer?.ipBytes)
    }

    /// How often the loop must look at this connection's timers.
    var shortestTimeout: Duration { machine.shortestTimeout }

    /// Takes a freshly accepted client socket and starts its machine.
    static func start(
        client fd: CInt, peer: SocketAddress?, listener: ListenerContext, listenerKey: Int,
        registry: ConnectionRegistry, loop: RelayLoop
    ) {
        let connection = RelayConnection(
            client: fd, peer: peer, listener: listener, listenerKey: listenerKey, registry: registry, loop: loop)
        loop.adopt(connection)
        let handle = RelayHandle(connection: connection, loop: loop)
        registry.register(ObjectIdentifier(connection), listener: listenerKey) { end in
            handle.loop.execute { handle.connection.shutDown(end) }
        }
        guard
            loop.watch(fd, for: .client(connection), events: EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue)
        else {
            connection.perform(
                connection.machine.setupFailed("cannot watch the client socket: \(String(cString: strerror(errno)))"))
            return
        }
        if let limit = listener.admission.admit(now: loop.now.monotonic) {
            connection.perform(connection.machine.limitReached(limit))
            return
        }
        connection.admitted = true
        connection.perform(connection.machine.start(now: loop.now.monotonic))
    }

    private var now: MonotonicInstant { loop.now.monotonic }

    // MARK: - Carrying out the machine's actions

    private func perform(_ action: ConnectionAction<NodeTarget>) {
        guard !finished else { return }
        switch action {
        case .none:
            break
        case .readPreamble:
            readPreamble()
        case .route(let trafficClass):
            if machine.proxyHeaderLength > 0, !headerDropped {
                // The front balancer's PROXY header was read with the preamble: not the node's.
                replay.removeFirst(min(machine.proxyHeaderLength, replay.count))
                headerDropped = true
            }
            perform(listener.route(&machine, trafficClass, clientAddress: { log.clientIP }, now: now))
        case .dial(let target):
            // Only after a failure is there anything to say: passing the machine copies it
            // (a retain of every reference in it), on every connection otherwise.
            if !machine.failures.isEmpty {
                log.dialling(after: machine, listener: listener)
                verdicts.report(machine, to: listener)
            }
            dial(target)
        case .startRelay(let withReplay, let halfCloseNode):
            guard let node else { return }
            if let header = listener.settings.proxyHeader(for: machine, peer: log.client, local: localAddress()) {
                node.queue(header)
            }
            if withReplay { node.queue(replay) }
            if halfCloseNode { node.outputClosing = true }
            pumpSoon()
        case .halfClose(let side):
            (side == .client ? client : node)?.outputClosing = true
            pumpSoon()
        case .finishWhenFlushed, .linger:
            pumpSoon()
        case .close:
            finish()
        }
    }

    // MARK: - Events from the loop

    func clientEvent(_ events: UInt32) {
        client.note(events)
        if machine.phase == .classifying {
            readPreamble()
        } else if node?.connected == true {
            pump()
        } else if client.hungUp {
            // Gone before a node was connected. Its bytes are not read before then.
            perform(
                machine.failed(
                    .client, .connectionReset, queuedForFailed: false, queuedForSurvivor: false, now: now))
        }
    }

    func nodeEvent(_ events: UInt32) {
        guard let node else { return }
        node.note(events)
        guard node.connected else {
            // A failed connect reports an error or hang-up; writable alone means connected (no
            // SO_ERROR call needed on the way that matters).
            if events & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 {
                var error: CInt = 0
                var length = socklen_t(MemoryLayout<CInt>.size)
                getsockopt(node.fd, SOL_SOCKET, SO_ERROR, &error, &length)
                let kind = error == 0 ? NodeFailureKind.closedWithoutAnswer : NodeFailureKind(connectError: error)
                perform(machine.connectFailed(kind, now: now))
            } else if events & EPOLLOUT.rawValue != 0 {
                node.connected = true
                node.hungUp = false
                registry.relayed(ObjectIdentifier(self), to: countedNode)
                if let target = machine.currentTarget { verdicts.connected(to: target) }
                perform(machine.connected(now: now))
                // The client's first bytes usually follow its handshake within microseconds:
                // the ACK waits a moment for them.
                if !finished, self.node === node, node.holdsHandshakeAck { loop.holdHandshakeAck(of: self) }
            }
            return
        }
        pump()
    }

    /// The balancer is closing this connection for good (`shutdown` or `drained`).
    func shutDown(_ end: ConnectionEnd = .shutdown) {
        perform(machine.shutDown(end))
    }

    /// Called by the loop after the poll that followed a half-close becoming due: if the
    /// connection did not close for good meanwhile, the half-close is carried out now.
    func halfCloseDueOutputs() {
        halfCloseQueued = false
        guard !finished, let node else { return }
        node.shutDownOutputIfDue()
        client.shutDownOutputIfDue()
    }

    /// Called by the loop after each poll while the node's handshake ACK is held for the client's
    /// first bytes: true once it is out, with bytes or, when `due`, on its own.
    func handshakeAckSettled(due: Bool) -> Bool {
        guard !finished, let node, node.holdsHandshakeAck else { return true }
        guard due else { return false }
        // A busy loop polls less often than the hold lasts: bytes that came during the last
        // round have no event yet, so one read looks for them before the ACK goes alone.
        client.readable = true
        pump()
        if !finished, self.node === node { node.releaseHandshakeAck() }
        return true
    }

    /// Called by the loop's sweep: the machine's timers.
    func checkDeadlines() {
        guard !finished else { return }
        perform(machine.tick(now: now))
    }

    // MARK: - Classifying

    /// Reads the ClientHello without answering it: the node gets every byte and completes the
    /// handshake with the client itself.
    private func readPreamble() {
        let buffer = loop.buffer
        var grew = false
        while client.readable, client.failure == nil, !client.inputClosed {
            // Never more than one byte past the largest PROXY header and ClientHello: enough to reject them.
            let size = min(buffer.count, ProxyHeader.v2MaximumLength + ClientHello.maximumSize + 1 - replay.count)
            guard size > 0 else { break }
            let count = cbl_recv(client.fd, buffer.baseAddress, size, 0)
            if count > 0 {
                grew = true
                replay.append(contentsOf: UnsafeRawBufferPointer(start: buffer.baseAddress, count: count))
            } else if count == 0 {
                client.inputClosed = true
            } else if errno == EAGAIN {
                client.readable = false
            } else if errno != EINTR {
                client.failure = errno
            }
        }
        if let failure = client.failure {
            perform(
                machine.failed(
                    .client, SocketFailure(code: failure), queuedForFailed: false, queuedForSurvivor: false, now: now))
        } else if grew || client.inputClosed {
            perform(machine.clientPreamble(replay, endOfInput: client.inputClosed, now: now))
        }
    }

    // MARK: - Moving bytes

    /// Moves what can be moved both ways until nothing changes, reporting each EOF, failure and
    /// flushed queue to the machine.
    private func pump() {
        guard let node, node.connected, !pumping else { return }
        pumping = true
        defer { pumping = false }
        var moved = true
        while moved, !finished, self.node === node {
            moved = pumpAgain
            pumpAgain = false
            if node.hasPending, !node.flush() { moved = true }
            if client.hasPending, !client.flush() { moved = true }
            if node.pipe?.count == 0 { releasePipe(of: node) }
            if client.pipe?.count == 0 { releasePipe(of: client) }
            if !halfCloseQueued, node.outputShutdownDue || client.outputShutdownDue {
                halfCloseQueued = true
                loop.halfCloseAfterPoll(self)
            }
            if forward(from: client, to: node, .client) { moved = true }
            guard !finished, self.node === node else { return }
            if forward(from: node, to: client, .node) { moved = true }
            guard !finished, self.node === node else { return }
            if report(node) { moved = true }
        }
    }

    private func pumpSoon() {
        if pumping { pumpAgain = true } else { pump() }
    }

    /// Reads from `source` while `destination` takes everything; true when anything happened.
    private func forward(from source: RelaySide, to destination: RelaySide, _ side: ConnectionSide) -> Bool {
        if let splice = loop.splice, source.readable, mayStartSplicing(side, threshold: splice.settings.threshold) {
            if destination.pipe == nil, !destination.hasPending { destination.pipe = splice.take() }
            if let pipe = destination.pipe {
                return spliceForward(from: source, to: destination, side, through: pipe, of: splice)
            }
        }
        var moved = false
        let buffer = loop.buffer
        while machine.phase == .relaying, source.readable, !source.inputClosed, source.failure == nil,
            destination.failure == nil, !destination.hasPending
        {
            let size = min(source.readSize, buffer.count)
            // recv, not read: read(2) on a socket passes the VFS layer first, ~3% of the CPU of a
            // keep-alive request in the profile (see Benchmarks/README.md).
            let count = cbl_recv(source.fd, buffer.baseAddress, size, 0)
            if count > 0 {
                moved = true
                if side == .client, machine.screensForProxyHeader {
                    let bytes = UnsafeRawBufferPointer(start: buffer.baseAddress, count: count)
                    let screened = machine.firstBytes(
                        startWithProxySignature: ProxyHeader.startsWithSignature(bytes) == true)
                    if case .close = screened {
                        finish()
                        return true
                    }
                }
                switch machine.read(from: side, count: count, now: now) {
                case .forward:
                    break
                case .keepForReplay:
                    replay.append(contentsOf: UnsafeRawBufferPointer(start: buffer.baseAddress, count: count))
                case .dropReplay:
                    replay = []
                case .close:
                    finish()
                    return true
                }
                if side == .node {
                    verdicts.nodeSpoke(to: listener)
                    // An answer after a redispatch settles what the nodes before it are blamed for.
                    if machine.blamed.count > verdicts.reported { verdicts.report(machine, to: listener) }
                }
                // A short read emptied the socket; after a FIN that is the EOF too (saves a read).
                // After a reset or error the next read says which it was.
                let emptied = count < size && !source.hungUp
                if emptied, source.peerShutDown {
                    // The machine hears of the EOF before these bytes go out: when it closes the
                    // destination's output, the FIN leaves in the same segment as the last bytes.
                    source.inputClosed = true
                    source.readable = false
                    reportEndOfInput(source, side)
                    guard !finished, destination === client || destination === self.node else { return true }
                }
                // The FIN follows at once: a half-close, or the close once the other way is empty.
                let finFollows =
                    emptied
                    && (destination.outputClosing && !destination.outputClosed
                        || machine.phase == .finishing && !source.hasPending)
                if !destination.send(buffer.baseAddress!, count: count, more: finFollows) { break }
                if finFollows { destination.shutDownOutputIfDue() }
                source.adjustReadSize(read: count, asked: size, allSent: !destination.hasPending, limit: buffer.count)
                if emptied { source.readable = false }
            } else if source.readGaveNothing(count) {
                moved = true
            }
        }
        if source.inputClosed, !source.eofReported {
            reportEndOfInput(source, side)
            moved = true
        }
        return moved
    }

    /// Tells the machine that `source` sent its EOF (once).
    private func reportEndOfInput(_ source: RelaySide, _ side: ConnectionSide) {
        guard !source.eofReported else { return }
        source.eofReported = true
        perform(machine.inputEnded(side, now: now))
    }

    /// Whether this direction has moved enough to be spliced, and the machine only forwards now
    /// (no replay kept, nothing screened), so no byte needs to pass through user space.
    private func mayStartSplicing(_ side: ConnectionSide, threshold: Int) -> Bool {
        (side == .client ? machine.bytesFromClient : machine.bytesFromNode) >= threshold && machine.forwardsOnly
    }

    /// `forward` on the splice path: from `source` into `pipe` and on into `destination`, in the
    /// kernel; what `destination` cannot take yet stays in the pipe, and reading waits until it is out.
    private func spliceForward(
        from source: RelaySide, to destination: RelaySide, _ side: ConnectionSide, through pipe: SplicePipe,
        of splice: SplicePool
    ) -> Bool {
        var moved = false
        while machine.phase == .relaying, source.readable, !source.inputClosed, source.failure == nil,
            destination.failure == nil, !destination.hasPending
        {
            // The pipe is empty here, so EAGAIN means the socket is (a full pipe would say it too).
            let count = cbl_splice(source.fd, pipe.writeEnd, splice.settings.pipeSize)
            if count > 0 {
                moved = true
                pipe.count += count
                splice.bytesSpliced += count
                if case .close = machine.read(from: side, count: count, now: now) {
                    finish()
                    return true
                }
                if !destination.flush() { break }
            } else if source.readGaveNothing(count) {
                moved = true
            }
        }
        if !destination.hasPending { releasePipe(of: destination) }
        if source.inputClosed, !source.eofReported {
            reportEndOfInput(source, side)
            moved = true
        }
        return moved
    }

    /// Gives `side`'s pipe back to the loop (kept for reuse when empty).
    private func releasePipe(of side: RelaySide) {
        guard let pipe = side.pipe else { return }
        side.pipe = nil
        loop.splice?.give(pipe)
    }

    /// Tells the machine about failed sockets and queues that emptied; true when it did.
    private func report(_ node: RelaySide) -> Bool {
        // Two plain calls, not a loop over an array of the pair: that array was allocated on
        // every round of every pump.
        if reportFailure(of: client, .client, other: node) || reportFailure(of: node, .node, other: client) {
            return true
        }
        switch machine.phase {
        case .finishing:
            guard (!client.hasPending || client.failure != nil), (!node.hasPending || node.failure != nil) else {
                return false
            }
        case .lingering:
            let survivor = client.failure == nil ? client : node
            guard !survivor.hasPending || survivor.failure != nil else { return false }
        default:
            return false
        }
        perform(machine.pendingWritten(now: now))
        return true
    }

    /// Tells the machine that `socket` failed, once; true when it did.
    private func reportFailure(of socket: RelaySide, _ side: ConnectionSide, other: RelaySide) -> Bool {
        guard let failure = socket.failure, !socket.failureReported else { return false }
        socket.failureReported = true
        perform(
            machine.failed(
                side, SocketFailure(code: failure), queuedForFailed: socket.hasPending,
                queuedForSurvivor: other.failure == nil && other.hasPending, now: now))
        return true
    }

    // MARK: - Connecting

    private func dial(_ target: NodeTarget) {
        dropNode()
        guard let address = target.address else {
            perform(machine.connectFailed(.unresolved(target.host), now: now))
            return
        }
        listener.directory.connectionOpened(to: target.node)
        countedNode = target.node
        let fd = socket(
            address.protocol.rawValue, CInt(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            let failure = SocketFailure(code: errno)
            perform(
                failure.isResourceExhaustion
                    ? machine.outOfResources(failure) : machine.connectFailed(.socket(failure), now: now))
            return
        }
        var one: CInt = 1
        setsockopt(fd, CInt(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<CInt>.size))
        let node = RelaySide(fd: fd, connected: false)
        node.holdHandshakeAck()
        self.node = node
        let connected = Self.connect(fd, to: address)
        guard connected == 0 || errno == EINPROGRESS else {
            perform(machine.connectFailed(NodeFailureKind(connectError: errno), now: now))
            return
        }
        guard
            loop.watch(fd, for: .node(self), events: EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue)
        else {
            perform(machine.connectFailed(.socket(SocketFailure(code: errno)), now: now))
            return
        }
    }

    /// connect(2) for every connection: IP addresses go straight from their `sockaddr`, not
    /// through `SocketAddress.withSockAddr`, whose generic closures cost more than the call.
    private static func connect(_ fd: CInt, to address: SocketAddress) -> CInt {
        switch address {
        case .v4(let ip): connect(fd, to: ip.address)
        case .v6(let ip): connect(fd, to: ip.address)
        default: address.withSockAddr { Glibc.connect(fd, $0, socklen_t($1)) }
        }
    }

    /// connect(2) to `raw`, a `sockaddr_in` or `sockaddr_in6`.
    private static func connect<Raw>(_ fd: CInt, to raw: Raw) -> CInt {
        withUnsafePointer(to: raw) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<Raw>.size))
            }
        }
    }

    /// Closes the node socket and gives its connection count back.
    private func dropNode() {
        if let node {
            releasePipe(of: node)
            loop.forget(node.fd)
            Glibc.close(node.fd)
            self.node = nil
        }
        if let countedNode {
            listener.directory.connectionClosed(from: countedNode)
            self.countedNode = nil
        }
    }

    /// Closes both sockets and writes the access-log line.
    private func finish() {
        guard !finished else { return }
        finished = true
        dropNode()
        releasePipe(of: client)
        loop.forget(client.fd)
        Glibc.close(client.fd)
        replay = []
        loop.release(self)
        if !machine.blamed.isEmpty { verdicts.report(machine, to: listener) }
        if admitted { listener.admission.release() }
        log.ended(machine, listener: listener)
        // After the line: whoever waits for the connection to go (a drain, shutdown) finds it written.
        registry.unregister(ObjectIdentifier(self))
        loop.budget.give()
    }

    /// The address the client connected to (for a PROXY header toward the node).
    private func localAddress() -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let got = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(client.fd, $0, &length) }
        }
        return got == 0 ? RelayListener.socketAddress(storage) : nil
    }
}

/// A relay connection as other threads may hold it: only ever touched on its own loop.
struct RelayHandle: @unchecked Sendable {
    let connection: RelayConnection
    let loop: RelayLoop
}
#endif
