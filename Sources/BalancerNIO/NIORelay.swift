import BalancerCore
import BalancerDataPath
import NIOCore
import NIOPosix
import NIOSSL

/// The NIO executor of `ConnectionMachine` for one connection: it owns the client channel's and
/// the node channel's `RelayGlue`, feeds the machine what they report, and carries out its
/// actions. Listeners the relay cannot serve run here: any `device`, `console` or `by-sni`
/// listener on a platform without epoll or bound to a host name. (`by-path` listeners are HTTP
/// proxies: `PathConnection`.)
final class NIORelay {
    private let listener: NIOListenerContext
    private var machine: ConnectionMachine<NodeTarget>
    private var log: ConnectionLog
    private let clientChannel: any Channel
    private let registry: ConnectionRegistry
    private let sweeper: RelaySweeper?
    private var clientGlue: RelayGlue!
    private var node: RelayGlue?
    /// The node `node` (or the connect under way) is counted against, until it is dropped.
    private var countedNode: NodeID?
    /// Numbers connect attempts, so the late answer of an abandoned one is recognised and closed.
    private var dialAttempt = 0
    /// What the current node must get first, and again if it is replaced: bytes a classifier
    /// read, then what the client sent, while the machine says to keep them.
    private var replay: [ByteBuffer] = []
    /// The client's first bytes while a `by-sni` connection is classified.
    private var preamble = ByteBuffer()
    /// An answer the client gets before the connection closes.
    private var answer: ByteBuffer?
    private var extraBytesOut = 0
    private var started = false
    private var finished = false
    /// Counted in by the listener's limits (released when it ends).
    private var admitted = false
    private var verdicts = NodeVerdicts()

    private init(
        clientChannel: any Channel, listener: NIOListenerContext, registry: ConnectionRegistry,
        sweeper: RelaySweeper?
    ) {
        self.clientChannel = clientChannel
        self.listener = listener
        self.registry = registry
        self.sweeper = sweeper
        self.log = ConnectionLog(client: clientChannel.remoteAddress, listener: listener.shared)
        self.machine = ConnectionMachine(
            settings: listener.shared.settings, now: NIODeadline.now().monotonic,
            initialClass: listener.shared.configuration.initialClass,
            peer: listener.shared.settings.proxyProtocolFrom == nil ? nil : clientChannel.remoteAddress?.ipBytes)
    }

    /// Adds the client side of a new connection to `channel`'s pipeline; the machine starts once
    /// the channel is active.
    @discardableResult
    static func attach(
        to channel: any Channel, listener: NIOListenerContext, listenerKey: Int, registry: ConnectionRegistry,
        sweeper: RelaySweeper?
    ) throws -> NIORelay {
        let relay = NIORelay(clientChannel: channel, listener: listener, registry: registry, sweeper: sweeper)
        relay.clientGlue = RelayGlue(side: .client, relay: relay, readsAllowed: false)
        try channel.pipeline.syncOperations.addHandler(relay.clientGlue)
        let handle = NIORelayHandle(relay: relay)
        let loop = channel.eventLoop
        registry.register(ObjectIdentifier(relay), listener: listenerKey) { end in
            loop.execute { handle.relay.shutDown(end) }
        }
        sweeper?.add(relay)
        // NIO closes an accepted channel that never becomes active when its listener closes while
        // the channel is being set up (a shutdown or reload right after the accept). No handler
        // hears of that close, and the connection would wait in the registry for the shutdown
        // grace to cut it.
        channel.closeFuture.whenComplete { _ in handle.relay.closedBeforeItStarted() }
        if channel.isActive { relay.start() }
        return relay
    }

    private var now: MonotonicInstant { NIODeadline.now().monotonic }

    /// How often the sweeper must look at this connection's timers.
    var shortestTimeout: Duration { machine.shortestTimeout }

    private func start() {
        guard !started else { return }
        started = true
        if let limit = listener.shared.admission.admit(now: now) {
            perform(machine.limitReached(limit))
            return
        }
        admitted = true
        perform(machine.start(now: now))
    }

    private func glue(_ side: ConnectionSide) -> RelayGlue? {
        side == .client ? clientGlue : node
    }

    // MARK: - Carrying out the machine's actions

    private func perform(_ action: ConnectionAction<NodeTarget>) {
        guard !finished else { return }
        switch action {
        case .none:
            break
        case .readPreamble:
            clientGlue.readOnce()
        case .route(let trafficClass):
            clientGlue.stopReading()
            perform(listener.shared.route(&machine, trafficClass, clientAddress: { log.clientIP }, now: now))
        case .dial(let target):
            log.dialling(after: machine, listener: listener.shared)
            verdicts.report(machine, to: listener.shared)
            dial(target)
        case .startRelay(let withReplay, let halfCloseNode):
            guard let node else { return }
            node.partner = clientGlue
            clientGlue.partner = node
            if let header = listener.shared.settings.proxyHeader(
                for: machine, peer: clientChannel.remoteAddress, local: clientChannel.localAddress)
            {
                node.write(ByteBuffer(bytes: header))
            }
            if withReplay {
                for buffer in replay { node.write(buffer) }
            }
            node.flush()
            if halfCloseNode { node.halfClose() }
            clientGlue.startReading()
        case .halfClose(let side):
            glue(side)?.halfClose()
        case .finishWhenFlushed:
            whenFlushed([clientGlue, node].compactMap { $0 })
        case .linger(let survivor):
            if survivor == .client { dropNode() }
            whenFlushed([glue(survivor)].compactMap { $0 })
        case .close:
            finish()
        }
    }

    /// Calls `pendingWritten` once every glue in `glues` has written what is queued for it.
    private func whenFlushed(_ glues: [RelayGlue]) {
        var waiting = glues.count
        guard waiting > 0 else {
            perform(machine.pendingWritten(now: now))
            return
        }
        for glue in glues {
            glue.whenFlushed {
                waiting -= 1
                if waiting == 0 { self.perform(self.machine.pendingWritten(now: self.now)) }
            }
        }
    }

    // MARK: - Events from the glue

    func channelActive(_ side: ConnectionSide) {
        if side == .client { start() }
    }

    func read(_ buffer: ByteBuffer, from side: ConnectionSide) {
        guard !finished else { return }
        if side == .client, machine.phase == .classifying {
            var buffer = buffer
            preamble.writeBuffer(&buffer)
            perform(machine.clientPreamble(preamble.readableBytesView, endOfInput: false, now: now))
            keepPreambleIfClassified()
            return
        }
        if side == .client, machine.screensForProxyHeader {
            let screened = machine.firstBytes(
                startWithProxySignature: ProxyHeader.startsWithSignature(buffer.readableBytesView) == true)
            if case .close = screened {
                finish()
                return
            }
        }
        switch machine.read(from: side, count: buffer.readableBytes, now: now) {
        case .forward:
            break
        case .keepForReplay:
            replay.append(buffer)
        case .dropReplay:
            replay = []
        case .close:
            finish()
            return
        }
        switch side {
        case .client:
            // Before its node is connected, what a client sent waits in the replay.
            if machine.phase == .relaying || machine.phase == .finishing { node?.write(buffer) }
        case .node:
            verdicts.nodeSpoke(to: listener.shared)
            // An answer after a redispatch settles what the nodes before it are blamed for.
            if machine.blamed.count > verdicts.reported { verdicts.report(machine, to: listener.shared) }
            clientGlue.write(buffer)
        }
    }

    func readComplete(from side: ConnectionSide) {
        glue(side.other)?.flush()
    }

    func inputEnded(_ side: ConnectionSide) {
        guard !finished else { return }
        if side == .client, machine.phase == .classifying {
            perform(machine.clientPreamble(preamble.readableBytesView, endOfInput: true, now: now))
            keepPreambleIfClassified()
            return
        }
        perform(machine.inputEnded(side, now: now))
    }

    func inactive(_ side: ConnectionSide) {
        guard !finished else { return }
        // A channel that closes without an error or EOF first (a TLS layer closing it, say) is gone
        // as if reset.
        failed(side, ChannelError.eof)
    }

    func failed(_ side: ConnectionSide, _ error: any Error) {
        guard !finished else { return }
        let queuedForFailed = glue(side)?.hasQueuedBytes ?? false
        let queuedForSurvivor = glue(side.other)?.hasQueuedBytes ?? false
        perform(
            machine.failed(
                side, Self.socketFailure(error), queuedForFailed: queuedForFailed,
                queuedForSurvivor: queuedForSurvivor, now: now))
    }

    /// The sweeper's look at the machine's timers.
    func tick(_ deadline: NIODeadline) {
        guard !finished else { return }
        perform(machine.tick(now: deadline.monotonic))
    }

    /// The balancer closes this connection for good (`shutdown` or `drained`).
    func shutDown(_ end: ConnectionEnd = .shutdown) {
        perform(machine.shutDown(end))
    }

    /// The client's channel closed: a connection that never started (its channel never became
    /// active) ends as its listener's closing ended it. Once started, the glue reports the close.
    private func closedBeforeItStarted() {
        guard !started else { return }
        shutDown(.shutdown)
    }

    private func keepPreambleIfClassified() {
        guard machine.phase != .classifying else { return }
        // A front balancer's PROXY header was read with the preamble: not the node's.
        preamble.moveReaderIndex(forwardBy: min(machine.proxyHeaderLength, preamble.readableBytes))
        if preamble.readableBytes > 0 { replay = [preamble] }
        preamble = ByteBuffer()
    }

    // MARK: - Connecting

    private func dial(_ target: NodeTarget) {
        dropNode()
        dialAttempt += 1
        let attempt = dialAttempt
        guard let address = target.address else {
            perform(machine.connectFailed(.unresolved(target.host), now: now))
            return
        }
        listener.shared.directory.connectionOpened(to: target.node)
        countedNode = target.node
        let connecting = listener.connect(to: target, at: address, on: clientChannel.eventLoop)
        connecting.assumeIsolated().whenComplete { result in
            guard attempt == self.dialAttempt, !self.finished else {
                // Given up on meanwhile (a timeout moved on, or the client left): its count is released.
                if case .success(let channel) = result { channel.close(promise: nil) }
                return
            }
            switch result {
            case .success(let channel):
                let glue = RelayGlue(side: .node, relay: self, readsAllowed: true)
                do {
                    // Added here, in the connect callback, before the loop can deliver any of its bytes.
                    try channel.pipeline.syncOperations.addHandler(glue)
                } catch {
                    channel.close(promise: nil)
                    self.perform(self.machine.connectFailed(.socket(Self.socketFailure(error)), now: self.now))
                    return
                }
                self.node = glue
                self.registry.relayed(ObjectIdentifier(self), to: target.node)
                self.verdicts.connected(to: target)
                self.perform(self.machine.connected(now: self.now))
            case .failure(let error as IOError) where SocketFailure(code: error.errnoCode).isResourceExhaustion:
                self.perform(self.machine.outOfResources(SocketFailure(code: error.errnoCode)))
            case .failure(let error):
                self.perform(self.machine.connectFailed(Self.failureKind(error, host: target.host), now: self.now))
            }
        }
    }

    /// Closes the node channel and gives its connection count back.
    private func dropNode() {
        node?.close()
        node = nil
        clientGlue.partner = nil
        if let countedNode {
            listener.shared.directory.connectionClosed(from: countedNode)
            self.countedNode = nil
        }
    }

    /// Closes both sides (after an answer for the client, if there is one) and writes the access-log line.
    private func finish() {
        guard !finished else { return }
        finished = true
        dialAttempt += 1
        dropNode()
        let client = clientGlue!
        if let answer {
            extraBytesOut += answer.readableBytes
            client.relay = nil
            client.write(answer)
            client.flush()
            client.whenFlushed { client.close() }
        } else {
            client.close()
        }
        replay = []
        sweeper?.remove(self)
        verdicts.report(machine, to: listener.shared)
        if admitted { listener.shared.admission.release() }
        log.ended(machine, listener: listener.shared, extraBytesOut: extraBytesOut)
        // Last: whoever waits for the connection to go (a drain, shutdown) finds its line written.
        registry.unregister(ObjectIdentifier(self))
    }

    // MARK: - Errors

    static func socketFailure(_ error: any Error) -> SocketFailure {
        switch error {
        case let error as IOError: SocketFailure(code: error.errnoCode)
        case ChannelError.connectTimeout: SocketFailure(code: ETIMEDOUT)
        default: .connectionReset
        }
    }

    static func failureKind(_ error: any Error, host: String) -> NodeFailureKind {
        switch error {
        case ChannelError.connectTimeout: .timedOut
        case let error as IOError: NodeFailureKind(connectError: error.errnoCode)
        case let error as NIOConnectionError:
            error.connectionErrors.first.map { failureKind($0.error, host: host) } ?? .unresolved(host)
        default: .socket(.connectionReset)
        }
    }

    /// A short, stable description of a connect or I/O error for logs: "connection refused", "connect timed out".
    static func describe(_ error: any Error) -> String {
        switch error {
        case ChannelError.connectTimeout, is IOError: failureKind(error, host: "").description
        case let error as NIOConnectionError:
            error.connectionErrors.first.map { describe($0.error) } ?? "cannot resolve \(error.host)"
        default: "\(error)"
        }
    }
}

@available(*, unavailable)
extension NIORelay: Sendable {}

/// A relay as the registry holds it: only ever touched on its channel's event loop.
private struct NIORelayHandle: @unchecked Sendable {
    let relay: NIORelay
}

extension Balancer {
    /// Every channel keeps its last receive buffer for the next read, idle or not: start small
    /// (a device's request is a few hundred bytes) and let busy connections grow to 64 KiB reads.
    static let receiveBuffers = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 256, maximum: 65_536)
}
