import BalancerCore
import BalancerDataPath
import NIOCore
import NIOHTTP1
import NIOSSL

/// The NIO executor of `HTTPExchangeMachine` for one request of a `by-path` connection (an
/// HTTP/1.1 request, or an HTTP/2 stream): routes it, takes a pooled node connection or dials
/// one, forwards the head as `RequestPolicy` rewrote it and the body as it streams, then the
/// node's answer as `ResponsePolicy` says, and gives the node connection back to the pool.
/// Backpressure both ways: the client is read only while the node can take more, and the node
/// only while the client can. Loop-bound.
final class NodeExchange {
    private let connection: PathConnection
    private var client: ClientHTTPHandler?
    private var machine: HTTPExchangeMachine<NodeTarget>
    private var log: RequestLog
    private let forwarding: RequestForwarding
    /// The head as the node gets it.
    private var head: HTTPRequestHead
    private let clientVersion: HTTPVersionNumber?
    private var node: NodeHTTPHandler?
    private var countedNode: NodeID?
    private var dialAttempt = 0
    /// Parts of the client's request read before the node connection was ready.
    private var waiting: [HTTPClientRequestPart] = []
    private var headSent = false
    /// The client sent its whole request.
    private(set) var requestComplete = false
    /// Bytes of the client's body dropped after the balancer answered in the node's stead.
    private var discarded = 0
    private var discarding = false
    /// Whether the client connection takes another request once the dropped body has ended.
    private var keepAliveAfterDiscard = false
    private var response: ResponseForwarding?
    private var tunnel: Tunnel?
    private var finished = false
    private var registered = false
    /// Failures of the machine already told to passive health.
    private var reportedFailures = 0

    /// The most body bytes read and dropped after an early answer before the client connection is closed.
    static let discardLimit = 1 << 20

    init(
        connection: PathConnection, client: ClientHTTPHandler, head: HTTPRequestHead, forwarding: RequestForwarding,
        clientVersion: HTTPVersionNumber?
    ) {
        self.connection = connection
        self.client = client
        self.forwarding = forwarding
        self.clientVersion = clientVersion
        self.machine = HTTPExchangeMachine(
            trafficClass: forwarding.trafficClass, retryable: forwarding.retryable,
            queueTimeout: connection.listener.shared.settings.queueTimeout,
            connectTimeout: connection.listener.shared.settings.connectTimeout)
        self.log = RequestLog(
            method: head.method.rawValue, path: forwarding.path, trafficClass: forwarding.trafficClass)
        var head = head
        // Removing copies the fields (they are shared with the decoder's part): only when one is there.
        for name in forwarding.removing where head.headers.contains(name: name) { head.headers.remove(name: name) }
        for field in forwarding.adding { head.headers.add(name: field.name, value: field.value) }
        // The balancer speaks HTTP/1.1 to the nodes, whatever the client speaks, so node connections stay open.
        if head.version != .http1_1 { head.version = .http1_1 }
        self.head = head
    }

    /// The HTTP/2 stream this request came on, for its log line.
    var stream: Int? {
        get { log.stream }
        set { log.stream = newValue }
    }

    func start() {
        perform(machine.start())
    }

    // MARK: - The client's side

    /// The client may be read: the node is connected and can take more (or the body is dropped).
    var wantsClientBytes: Bool {
        if discarding { return true }
        guard !requestComplete else { return false }
        guard let node, headSent else { return false }
        return node.isWritable
    }

    /// Further client parts belong to this request (and not to the next one on the connection).
    var takesClientParts: Bool { !requestComplete }

    /// The client's connection can take more of the answer.
    var clientTakesMore: Bool { client?.isWritable ?? false }

    func clientBody(_ buffer: ByteBuffer) {
        log.bytesIn += buffer.readableBytes
        if discarding {
            discarded += buffer.readableBytes
            if discarded > Self.discardLimit { client?.closeAfterFlush() }
            return
        }
        if case .decidedByFirstPart = forwarding.body, !headSent, !head.headers.contains(name: "transfer-encoding") {
            head.headers.add(name: "Transfer-Encoding", value: "chunked")
        }
        forward(.body(.byteBuffer(buffer)))
    }

    func clientEnd(_ trailers: HTTPHeaders?) {
        requestComplete = true
        if discarding {
            discarding = false
            finish(keepAlive: keepAliveAfterDiscard)
            return
        }
        forward(.end(trailers))
    }

    func clientReadComplete() {
        node?.flush()
    }

    func clientWritable() {
        node?.resumeReading()
        tunnel?.clientWritable()
    }

    /// The client connection closed or failed.
    func clientClosed() {
        guard !finished else { return }
        machine.ended(.clientAborted)
        dropNode(reusable: false)
        finish(keepAlive: false)
    }

    /// The balancer ends the request: its node is drained, or the balancer shuts down.
    func end(_ why: ConnectionEnd) {
        guard !finished else { return }
        let outcome: RequestOutcome = why.outcome == .drained ? .drained : .shutdown
        if let tunnel {
            machine.ended(outcome, why.reason)
            tunnel.close()
            return
        }
        if machine.phase == .responding {
            machine.ended(outcome, why.reason)
            dropNode(reusable: false)
            client?.abort()
            finish(keepAlive: false)
            return
        }
        machine.ended(outcome, why.reason)
        dropNode(reusable: false)
        answer(
            BalancerAnswer(
                status: 503, text: "the UMS server is being \(outcome == .drained ? "drained" : "shut down")",
                retryAfter: 5))
    }

    func tick(_ now: MonotonicInstant) {
        guard !finished else { return }
        perform(machine.tick(now: now))
    }

    // MARK: - The node's side

    /// The node connection finished its TLS handshake.
    func nodeReady() {
        guard node != nil, machine.phase == .acquiring else { return }
        perform(machine.acquired(reused: false))
    }

    func nodeRead(_ part: HTTPClientResponsePart) {
        guard !finished, let client else { return }
        switch part {
        case .head(var head):
            let facts = ResponseFacts(
                status: Int(head.status.code),
                version: HTTPVersionNumber(major: head.version.major, minor: head.version.minor),
                connection: head.headers["connection"],
                contentLength: head.headers.contains(name: "content-length"),
                chunked: head.headers["transfer-encoding"].last.map(TransferCoding.endsChunked) ?? false,
                toHEAD: self.head.method == .HEAD)
            var request = forwarding
            // A balancer shutting down takes no further request on this connection: the answer says so.
            if connection.quiescing { request.clientKeepAlive = false }
            let plan = ResponsePolicy.forwarding(facts, request: request, clientVersion: clientVersion)
            if !plan.informational {
                machine.responseStarted()
                response = plan
                log.status = facts.status
                connection.nodeAnswered(machine.currentTarget)
            }
            guard !plan.drop else { return }
            for name in plan.removing where head.headers.contains(name: name) { head.headers.remove(name: name) }
            for field in plan.adding { head.headers.add(name: field.name, value: field.value) }
            // Setting the version copies the head's storage: only when it differs.
            if let clientVersion, head.version.major != clientVersion.major || head.version.minor != clientVersion.minor
            {
                head.version = HTTPVersion(major: clientVersion.major, minor: clientVersion.minor)
            }
            client.write(.head(head))
        case .body(let buffer):
            guard response != nil else { return }
            log.bytesOut += buffer.readableBytes
            client.write(.body(.byteBuffer(buffer)))
        case .end(let trailers):
            guard let response else { return }
            client.write(.end(trailers))
            // The decoders stop after a 101's end: what follows on either side is the new protocol.
            if response.tunnel {
                client.flush()
                startTunnel()
                return
            }
            machine.responseFinished()
            dropNode(reusable: response.nodeReusable && requestComplete)
            if requestComplete {
                finish(keepAlive: response.clientKeepAlive)
            } else {
                // The node answered before the client finished sending: read the rest and drop it,
                // so the client reads its answer instead of a reset.
                discarding = true
                keepAliveAfterDiscard = response.clientKeepAlive
                client.resumeReading()
            }
            // Flushed last: the exchange is done with both connections first (an HTTP/2 stream
            // closes as its end goes out), and the read-complete that would flush comes after
            // the exchange let go of the client.
            client.flush()
        }
    }

    func nodeReadComplete() {
        client?.flush()
    }

    func nodeWritable() {
        client?.resumeReading()
    }

    /// The node connection closed or failed before the exchange was done with it.
    func nodeFailed(_ error: any Error) {
        guard !finished, node != nil else { return }
        node = nil
        if machine.phase == .acquiring {
            perform(machine.acquireFailed(NIORelay.failureKind(error, host: machine.currentTarget?.host ?? "")))
        } else {
            perform(machine.nodeFailed())
        }
    }

    // MARK: - Carrying out the machine's actions

    private func perform(_ action: ExchangeAction<NodeTarget>) {
        guard !finished else { return }
        switch action {
        case .none:
            break
        case .route(let trafficClass):
            switch connection.route(trafficClass) {
            case .targets(let targets): perform(machine.routed(targets))
            case .refused(let refusal): perform(machine.refused(refusal))
            case .queue: perform(machine.queued(now: NIODeadline.now().monotonic))
            }
        case .acquire(let target, let reuse):
            acquire(target, reuse: reuse)
        case .send:
            send()
        case .answer(let answer):
            reportFailures()
            dropNode(reusable: false)
            self.answer(answer)
        case .abort:
            reportFailures()
            dropNode(reusable: false)
            client?.abort()
            finish(keepAlive: false)
        }
    }

    /// Tells passive health the node failures recorded since the last call.
    private func reportFailures() {
        let failures = machine.failures
        guard failures.count > reportedFailures else { return }
        connection.reportFailures(failures[reportedFailures...])
        reportedFailures = failures.count
    }

    private func acquire(_ target: NodeTarget, reuse: Bool) {
        reportFailures()
        dropNode(reusable: false)
        if countedNode != target.node {
            if let countedNode { connection.directory.connectionClosed(from: countedNode) }
            connection.directory.connectionOpened(to: target.node)
            countedNode = target.node
        }
        guard let address = target.address else {
            perform(machine.acquireFailed(.unresolved(target.host)))
            return
        }
        let key = connection.poolKey(for: target, at: address)
        if reuse, let pooled = connection.pool?.take(key) {
            pooled.exchange = self
            node = pooled
            perform(machine.acquired(reused: true))
            return
        }
        machine.connecting(now: NIODeadline.now().monotonic)
        dialAttempt += 1
        let attempt = dialAttempt
        connection.dial(target, at: address, key: key).assumeIsolated().whenComplete { result in
            guard attempt == self.dialAttempt, !self.finished, self.machine.phase == .acquiring else {
                if case .success(let handler) = result { handler.close() }
                return
            }
            switch result {
            case .success(let handler):
                handler.exchange = self
                self.node = handler
                if handler.ready { self.perform(self.machine.acquired(reused: false)) }
            case .failure(let error):
                self.perform(self.machine.acquireFailed(NIORelay.failureKind(error, host: target.host)))
            }
        }
    }

    private func send() {
        if !registered, let node = machine.node {
            registered = true
            connection.registerExchange(self, node: node)
        }
        // An HTTP/2 request without Content-Length waits for its first part to say whether a body follows.
        if case .decidedByFirstPart = forwarding.body, waiting.isEmpty, !requestComplete { return }
        sendHead()
    }

    private func sendHead() {
        guard let node, !headSent else { return }
        headSent = true
        node.write(.head(head))
        for part in waiting { node.write(part) }
        // A retry on a fresh connection sends the same head again: keep the parts (the end) it needs.
        if !forwarding.retryable { waiting = [] }
        // Sent while the client's bytes are being read (a pooled connection was at hand), the
        // head waits for the rest of the read (the end, a body) and the read's completion flushes
        // them together; sent later (a new connection came up), it goes now.
        if !(client?.isReading ?? false) { node.flush() }
        client?.resumeReading()
    }

    private func forward(_ part: HTTPClientRequestPart) {
        guard let node, headSent else {
            waiting.append(part)
            if case .decidedByFirstPart = forwarding.body, machine.phase == .sending { sendHead() }
            return
        }
        node.write(part)
        if case .end = part, !(client?.isReading ?? false) { node.flush() }
    }

    /// Lets the current node connection go: back to the pool, or closed.
    private func dropNode(reusable: Bool) {
        if let node {
            self.node = nil
            node.exchange = nil
            if reusable, connection.pool != nil, node.isOpen {
                connection.pool?.put(node)
            } else {
                node.close()
            }
        }
        headSent = false
    }

    private func answer(_ answer: BalancerAnswer) {
        log.status = answer.status
        response = nil
        let keepAlive = forwarding.clientKeepAlive && !connection.quiescing
        client?.writeAnswer(answer, keepAlive: keepAlive)
        if requestComplete {
            finish(keepAlive: keepAlive)
        } else {
            // Read the rest of the request and drop it, then the connection takes the next one.
            discarding = true
            keepAliveAfterDiscard = keepAlive
            client?.resumeReading()
        }
    }

    private func finish(keepAlive: Bool) {
        guard !finished else { return }
        finished = true
        if let node { dropNode(reusable: false) }
        if let countedNode {
            connection.directory.connectionClosed(from: countedNode)
            self.countedNode = nil
        }
        if registered { connection.unregisterExchange(self) }
        reportFailures()
        if let machineNode = machine.node { connection.lastNode = machineNode }
        connection.requestLogged(log, machine, of: self)
        let client = self.client
        self.client = nil
        client?.exchangeFinished(keepAlive: keepAlive)
    }

    // MARK: - Upgrades

    /// The node switched protocols: both connections leave HTTP and their bytes are relayed.
    private func startTunnel() {
        guard let node, let client else { return }
        self.node = nil
        node.detach()
        machine.responseFinished(upgraded: true)
        connection.upgraded()
        tunnel = Tunnel(exchange: self)
        client.becomeTunnel(tunnel!)
        Tunnel.attach(tunnel!, toNode: node)
    }

    /// Bytes moved through the tunnel: the connection is not idle.
    func tunnelActivity() {
        connection.activity()
    }

    /// The tunnel closed: the upgraded connection is over.
    func tunnelClosed() {
        guard !finished else { return }
        tunnel = nil
        finish(keepAlive: false)
    }
}

@available(*, unavailable)
extension NodeExchange: Sendable {}
