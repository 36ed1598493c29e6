import BalancerCore
import BalancerDataPath
import NIOCore
import NIOSSL

extension PathConnection {
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
}
