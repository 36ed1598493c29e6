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
    let connection: PathConnection
    var client: ClientHTTPHandler?
    var machine: HTTPExchangeMachine<NodeTarget>
    var log: RequestLog
    let forwarding: RequestForwarding
    /// The head as the node gets it.
    var head: HTTPRequestHead
    let clientVersion: HTTPVersionNumber?
    var node: NodeHTTPHandler?
    var countedNode: NodeID?
    var dialAttempt = 0
    /// Parts of the client's request read before the node connection was ready.
    var waiting: [HTTPClientRequestPart] = []
    var headSent = false
    /// The client sent its whole request.
    var requestComplete = false
    /// Bytes of the client's body dropped after the balancer answered in the node's stead.
    var discarded = 0
    var discarding = false
    /// Whether the client connection takes another request once the dropped body has ended.
    var keepAliveAfterDiscard = false
    var response: ResponseForwarding?
    var tunnel: Tunnel?
    var finished = false
    var registered = false
    /// Failures of the machine already told to passive health.
    var reportedFailures = 0

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
        // The fields are shared with the decoder's part: copied once, with room for what is added.
        head.headers.reserveCapacity(head.headers.count + forwarding.adding.count)
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
}

@available(*, unavailable)
extension NodeExchange: Sendable {}
