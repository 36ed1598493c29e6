import BalancerCore
import BalancerDataPath
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One client connection of a `by-path` listener: the NIO executor of `HTTPConnectionMachine`.
/// It holds what every request of the connection shares (the client's address and certificate,
/// the listener's settings, the loop's node pool), the limits and timers of the connection, its
/// registration for shutdown, and its access-log line. Each request is a `NodeExchange`.
/// Loop-bound.
final class PathConnection {
    let listener: NIOListenerContext
    let settings: PathListenerSettings
    private let channel: any Channel
    private let registry: ConnectionRegistry
    private let sweeper: RelaySweeper?
    private var machine: HTTPConnectionMachine
    private var log: ConnectionLog
    /// What every forwarded request says about its client.
    private(set) var identity: ClientIdentity
    /// The client a trusted front balancer named, and where it connected to.
    private var proxiedClient: ProxyHeader.Address?
    private var proxiedDestination: ProxyHeader.Address?
    private var gate: ProxyProtocolGate?
    /// The idle node connections of this loop (nil: every request gets its own node connection).
    let pool: NodePool?
    /// Requests in flight: one on HTTP/1.1, one per stream on HTTP/2.
    private var exchanges: [NodeExchange] = []
    /// The wire handler after TLS: counts bytes, closes once flushed. It holds this connection
    /// too: `finish()` lets go of it.
    private var wire: ClientWire?
    private var bytesIn = 0
    private var bytesOut = 0
    /// Bytes of the request head being read, while one is.
    private var headBytes = 0
    private var firstClass: TrafficClass?
    private var classifiedAs: String?
    /// The node that served the latest request.
    var lastNode: NodeID?
    private var admitted = false
    private var started = false
    /// The listener's certificates could not be loaded: its connections are closed.
    var certificatesMissing = false
    /// The client sent its EOF.
    private var clientInputClosed = false
    private var finished = false
    private var clientCertificate: Bool?
    private var clientText: String?
    private var requestCounter = ListenerMetrics.RequestCounterCache()

    private let listenerKey: Int

    init(
        channel: any Channel, listener: NIOListenerContext, settings: PathListenerSettings, listenerKey: Int,
        registry: ConnectionRegistry, sweeper: RelaySweeper?
    ) {
        self.channel = channel
        self.listenerKey = listenerKey
        self.listener = listener
        self.settings = settings
        self.registry = registry
        self.sweeper = sweeper
        let configuration = listener.shared.configuration
        self.machine = HTTPConnectionMachine(
            settings: settings.http,
            timeouts: HTTPConnectionTimeouts(
                handshake: configuration.handshakeTimeout, idle: listener.shared.settings.idleTimeout),
            now: NIODeadline.now().monotonic)
        self.log = ConnectionLog(client: channel.remoteAddress, listener: listener.shared)
        self.identity = ClientIdentity(address: channel.remoteAddress?.ipAddress)
        if let trusted = configuration.proxyProtocolFrom {
            gate = ProxyProtocolGate(from: trusted, peer: channel.remoteAddress?.ipBytes)
        }
        // A PROXY header names one client: node connections that carry one are never shared.
        self.pool = configuration.sendProxy == nil ? listener.nodePools?.pool(for: channel.eventLoop) : nil
    }

    var directory: NodeDirectory { listener.shared.directory }
    var rules: PathRules { settings.rules }
    /// The connection takes no request after the one in flight.
    var quiescing: Bool { machine.quiescing }
    /// The client speaks HTTP/2: its requests are streams.
    var isHTTP2 = false

    func attach(wire: ClientWire) {
        self.wire = wire
    }

    /// The channel is active: counted in by the listener's limits, registered, timed.
    func start() {
        guard !started else { return }
        started = true
        if identity.address == nil { identity.address = channel.remoteAddress?.ipAddress }
        if let limit = listener.shared.admission.admit(now: NIODeadline.now().monotonic) {
            let end = ConnectionEnd(.refused, .limit(limit))
            machine.refuse(end, text: RefusalPage.text(for: .limit(limit)))
        } else {
            admitted = true
        }
        let handle = PathConnectionHandle(connection: self)
        let loop = channel.eventLoop
        registry.register(
            ObjectIdentifier(self), listener: listenerKey,
            close: { end in loop.execute { handle.connection.shutDown(end) } },
            quiesce: { loop.execute { handle.connection.quiesce() } })
        sweeper?.add(self)
        if certificatesMissing {
            machine.ended(ConnectionEnd(.handshakeFailed, .handshake(.listenerCertificates)))
            close()
        }
    }

    // MARK: - The wire

    /// The raw first bytes, before TLS, on a listener that takes PROXY headers.
    func rawPreamble(_ bytes: ByteBuffer, endOfInput: Bool) -> ProxyProtocolGate.Verdict {
        guard let gate else { return .pass(nil, length: 0) }
        let verdict = gate.offer(bytes.readableBytesView, endOfInput: endOfInput)
        switch verdict {
        case .needMore:
            break
        case .pass(let header, _):
            self.gate = nil
            if let header {
                proxiedClient = header.source
                proxiedDestination = header.destination
                if let source = header.source { identity.address = source.ipText }
            }
        case .refuse(let end):
            self.gate = nil
            machine.ended(end)
            close()
        }
        return verdict
    }

    /// The TLS handshake is done: the client's certificate is known.
    func handshakeCompleted(certificate: NIOSSLCertificate?) {
        machine.handshakeCompleted(now: NIODeadline.now().monotonic)
        if settings.tls.clientCA != nil { clientCertificate = certificate != nil }
        if let pem = certificate.flatMap({ try? PathListenerTLS.pem($0) }) {
            identity = ClientIdentity(address: identity.address, certificatePEM: pem)
        }
    }

    func bytesRead(_ count: Int) {
        bytesIn += count
        // HTTP/2 frames arrive whole and come between requests too (PING, SETTINGS): no head to time.
        if isHTTP2 {
            machine.activity(now: NIODeadline.now().monotonic)
            return
        }
        switch machine.phase {
        case .awaitingRequest:
            machine.bytesArrived(now: NIODeadline.now().monotonic)
            headBytes = count
        case .readingHead:
            headBytes += count
        case .serving, .tunnel:
            machine.activity(now: NIODeadline.now().monotonic)
        case .handshaking, .closed:
            break
        }
    }

    /// A read went through the HTTP decoder: a head still incomplete past the limit is refused.
    func readDecoded() {
        guard machine.phase == .readingHead, headBytes > settings.http.maxHeaderSize else { return }
        if case .answerAndClose(let answer, _) = machine.headTooLarge() {
            answerRaw(answer)
        }
    }

    func bytesWritten(_ count: Int) {
        bytesOut += count
    }

    /// The client connection failed (a reset, a TLS error).
    func failed(_ error: any Error) {
        guard !finished else { return }
        if machine.phase == .handshaking {
            machine.ended(ConnectionEnd(.handshakeFailed, .handshake(TLSHandshakeError.failure(error))))
        } else if !exchanges.isEmpty || machine.phase == .readingHead, !Self.isCleanClose(error) {
            machine.ended(ConnectionEnd(.error, .socketFailed(.client, NIORelay.socketFailure(error))))
        }
        close()
    }

    /// The client connection closed.
    func closed() {
        finish()
    }

    /// The client sent its EOF (a TCP half-close, or TLS close_notify): it sends no more requests.
    /// An idle connection closes now, a busy one once its answer is out; a tunnel closes itself.
    func inputClosed() {
        clientInputClosed = true
        switch machine.phase {
        case .serving, .tunnel, .closed:
            break
        case .handshaking, .awaitingRequest, .readingHead:
            machine.ended(
                machine.phase == .awaitingRequest ? .closed : ConnectionEnd(.clientAborted, .clientClosedBeforeNode))
            closeWhenFlushed()
        }
    }

    // MARK: - Requests

    func requestStarted(headerCount: Int) -> RequestAdmission {
        headBytes = 0
        let admission = machine.requestStarted(headerCount: headerCount, now: NIODeadline.now().monotonic)
        // HTTP/2: the last request's stream is served while a GOAWAY tells the client to go elsewhere.
        if isHTTP2, case .serve(last: true) = admission { goAway() }
        return admission
    }

    /// An HTTP/2 stream's request is done (or was answered by the balancer).
    func streamFinished() {
        guard machine.phase == .serving else { return }
        // The connection closes through the GOAWAY of a graceful close, once the last stream is done.
        _ = machine.requestFinished(keepAlive: true, now: NIODeadline.now().monotonic)
    }

    /// HTTP/2: no more streams on this connection; it closes once the open ones are done.
    func goAway() {
        channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
    }

    func requestFinished(keepAlive: Bool) -> HTTPConnectionAction {
        machine.requestFinished(keepAlive: keepAlive && !clientInputClosed, now: NIODeadline.now().monotonic)
    }

    func classified(_ forwarding: RequestForwarding, method: String) {
        guard firstClass == nil else { return }
        firstClass = forwarding.trafficClass
        classifiedAs = "\(method) \(forwarding.path)\(identity.certificateHeader == nil ? "" : " client-cert")"
    }

    func exchangeStarted(_ exchange: NodeExchange) {
        exchanges.append(exchange)
    }

    func route(_ trafficClass: TrafficClass) -> Route {
        let configuration = listener.shared.configuration
        let algorithm = configuration.algorithm(for: trafficClass)
        // Only affinity needs the client's address; the other algorithms skip it.
        let clientKey = algorithm == .source ? identity.address ?? "unknown" : ""
        return directory.route(
            trafficClass, algorithm: algorithm, clientKey: clientKey, port: configuration.backendPort)
    }

    func poolKey(for target: NodeTarget, at address: SocketAddress) -> NodePoolKey {
        NodePoolKey(
            node: target.node, address: address,
            tls: listener.tls.map { ObjectIdentifier($0.backend) } ?? ObjectIdentifier(NodePool.self))
    }

    /// Connects to a node and sets its pipeline up: the PROXY header (`send_proxy`) before TLS,
    /// TLS, the HTTP/1.1 client codec and the exchange's handler.
    func dial(_ target: NodeTarget, at address: SocketAddress, key: NodePoolKey) -> EventLoopFuture<NodeHTTPHandler> {
        let backendTLS = listener.tls?.backend
        let header = listener.shared.settings.sendProxy.map { version in
            ProxyHeader(
                source: proxiedClient ?? channel.remoteAddress?.proxyAddress,
                destination: proxiedDestination ?? channel.localAddress?.proxyAddress
            ).encoded(version: version)
        }
        return listener.connectHTTP(to: target, at: address, on: channel.eventLoop).flatMapThrowing { node in
            let pipeline = node.pipeline.syncOperations
            if let header { node.writeAndFlush(ByteBuffer(bytes: header), promise: nil) }
            if let backendTLS { try pipeline.addHandler(NIOSSLClientHandler(context: backendTLS, serverHostname: nil)) }
            try HTTPHandlers.addClientCodec(to: pipeline)
            let handler = NodeHTTPHandler(key: key, overTLS: backendTLS != nil)
            try pipeline.addHandler(handler)
            return handler
        }
    }

    func nodeAnswered(_ target: NodeTarget?) {
        guard let target, target.reportsAnswer else { return }
        directory.nodeAnswered(target.node)
    }

    func reportFailures(_ failures: ArraySlice<NodeFailure>) {
        for failure in failures { listener.shared.nodeFailed(failure) }
    }

    func registerExchange(_ exchange: NodeExchange, node: NodeID) {
        let handle = NodeExchangeHandle(exchange: exchange)
        let loop = channel.eventLoop
        registry.registerExchange(ObjectIdentifier(exchange), node: node) { end in
            loop.execute { handle.exchange.end(end) }
        }
    }

    func unregisterExchange(_ exchange: NodeExchange) {
        registry.unregisterExchange(ObjectIdentifier(exchange))
    }

    /// The access-log line of a request that ended.
    func requestLogged(_ request: RequestLog, _ exchange: HTTPExchangeMachine<NodeTarget>, of owner: NodeExchange) {
        if let index = exchanges.firstIndex(where: { $0 === owner }) { exchanges.remove(at: index) }
        request.ended(
            exchange, client: clientDescription, clientCertificate: clientCertificate, listener: listener.shared,
            counter: &requestCounter)
    }

    /// A request answered by the balancer before any exchange began (a refusal, a limit).
    func requestRefused(method: String, target: String, answer: BalancerAnswer, stream: Int?) {
        var request = RequestLog(
            method: method, path: String((PathRules.path(of: target) ?? target).prefix(200)),
            trafficClass: rules.classify(target: target))
        request.status = answer.status
        request.stream = stream
        var exchange = HTTPExchangeMachine<NodeTarget>(
            trafficClass: request.trafficClass, retryable: false, queueTimeout: .zero, connectTimeout: .zero)
        let end = machine.end
        exchange.ended(end?.outcome == .refused ? .refused : .rejected, end?.reason)
        request.ended(
            exchange, client: clientDescription, clientCertificate: clientCertificate, listener: listener.shared,
            counter: &requestCounter)
    }

    func headTooLarge() -> HTTPConnectionAction {
        machine.headTooLarge()
    }

    func malformed(_ detail: String) -> HTTPConnectionAction {
        machine.malformed(detail)
    }

    func upgraded() {
        machine.upgraded(now: NIODeadline.now().monotonic)
    }

    func activity() {
        machine.activity(now: NIODeadline.now().monotonic)
    }

    // MARK: - Time and the balancer

    /// How often the sweeper must look at this connection's timers.
    var shortestTimeout: Duration {
        min(machine.shortestTimeout, listener.shared.settings.connectTimeout, listener.shared.settings.queueTimeout)
    }

    func tick(_ deadline: NIODeadline) {
        guard !finished else { return }
        let now = deadline.monotonic
        for exchange in exchanges { exchange.tick(now) }
        perform(machine.tick(now: now))
    }

    /// The balancer closes the connection for good (shutdown grace over, listener gone).
    func shutDown(_ end: ConnectionEnd) {
        guard !finished else { return }
        machine.ended(end)
        for exchange in exchanges { exchange.end(end) }
        closeWhenFlushed()
    }

    /// The balancer is stopping: no request after the ones in flight.
    func quiesce() {
        guard !finished else { return }
        let action = machine.quiesce()
        if isHTTP2, case .none = action {
            goAway()
            return
        }
        perform(action)
    }

    private func perform(_ action: HTTPConnectionAction) {
        switch action {
        case .none, .readNext:
            break
        case .close:
            closeWhenFlushed()
        case .answerAndClose(let answer, _):
            answerRaw(answer)
        }
    }

    /// A limit's answer (408, 431) while no request is in flight, through the HTTP codec.
    private func answerRaw(_ answer: BalancerAnswer) {
        guard let handler = try? channel.pipeline.syncOperations.handler(type: ClientHTTPHandler.self) else {
            closeWhenFlushed()
            return
        }
        handler.writeAnswer(answer, keepAlive: false)
        handler.closeAfterFlush(linger: true)
    }

    func close() {
        channel.close(promise: nil)
    }

    /// Closes once what was written is out; `linger`: after an answer that ends the connection
    /// while the client may still be sending (a 4xx), what it sends is read and dropped first.
    func closeWhenFlushed(linger: Bool = false) {
        guard let wire else {
            close()
            return
        }
        wire.closeWhenFlushed(linger: linger)
    }

    // MARK: - Ending

    private var clientDescription: String {
        if let clientText { return clientText }
        let text = proxiedClient?.description ?? log.clientDescription
        clientText = text
        return text
    }

    private func finish() {
        guard !finished else { return }
        finished = true
        wire = nil
        let open = exchanges
        exchanges = []
        for exchange in open { exchange.clientClosed() }
        registry.unregister(ObjectIdentifier(self))
        sweeper?.remove(self)
        if admitted { listener.shared.admission.release() }
        if let limit = machine.limitHit { listener.shared.metrics.httpLimitHit(limit) }
        if let clientCertificate { log.metadata["client_cert"] = clientCertificate ? "present" : "none" }
        log.metadata["requests"] = "\(machine.requests)"
        log.ended(
            machine.end ?? .closed, trafficClass: firstClass ?? listener.shared.configuration.initialClass,
            node: lastNode, bytesIn: bytesIn, bytesOut: bytesOut, classified: classifiedAs,
            proxiedClient: proxiedClient, listener: listener.shared)
    }

    /// A TLS close without close_notify, or a reset, with no request in flight: a client that left.
    private static func isCleanClose(_ error: any Error) -> Bool {
        if case NIOSSLError.uncleanShutdown = error { return true }
        return false
    }
}

@available(*, unavailable)
extension PathConnection: Sendable {}

/// A connection as the registry and the HTTP/2 stream initializer hold it: only ever touched on
/// its channel's event loop.
struct PathConnectionHandle: @unchecked Sendable {
    let connection: PathConnection
}

/// An exchange as the registry holds it: only ever touched on its channel's event loop.
private struct NodeExchangeHandle: @unchecked Sendable {
    let exchange: NodeExchange
}
