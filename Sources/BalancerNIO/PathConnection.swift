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
    let channel: any Channel
    let registry: ConnectionRegistry
    let sweeper: RelaySweeper?
    var machine: HTTPConnectionMachine
    var log: ConnectionLog
    /// What every forwarded request says about its client.
    private(set) var identity: ClientIdentity
    /// The client a trusted front balancer named, and where it connected to.
    var proxiedClient: ProxyHeader.Address?
    var proxiedDestination: ProxyHeader.Address?
    var gate: ProxyProtocolGate?
    /// The idle node connections of this loop (nil: every request gets its own node connection).
    let pool: NodePool?
    /// Requests in flight: one on HTTP/1.1, one per stream on HTTP/2.
    var exchanges: [NodeExchange] = []
    /// The wire handler after TLS: counts bytes, closes once flushed. It holds this connection
    /// too: `finish()` lets go of it.
    var wire: ClientWire?
    var bytesIn = 0
    var bytesOut = 0
    /// Bytes of the request head being read, while one is.
    var headBytes = 0
    var firstClass: TrafficClass?
    var classifiedAs: String?
    /// The node that served the latest request.
    var lastNode: NodeID?
    var admitted = false
    var started = false
    /// The listener's certificates could not be loaded: its connections are closed.
    var certificatesMissing = false
    /// The client sent its EOF.
    var clientInputClosed = false
    /// The client sent a byte (TLS listeners; plain ones wait for a request head anyway).
    var clientSpoke = false
    var finished = false
    var clientCertificate: Bool?
    var clientText: String?
    var requestCounter = ListenerMetrics.RequestCounterCache()

    let listenerKey: Int

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
            machine.ended(
                clientSpoke ? ConnectionEnd(.handshakeFailed, .handshake(TLSHandshakeError.failure(error))) : .closed)
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
            let silent = machine.phase == .awaitingRequest || machine.phase == .handshaking && !clientSpoke
            machine.ended(silent ? .closed : ConnectionEnd(.clientAborted, .clientClosedBeforeNode))
            closeWhenFlushed()
        }
    }

    // MARK: - Ending

    var clientDescription: String {
        if let clientText { return clientText }
        let text = proxiedClient?.description ?? log.clientDescription
        clientText = text
        return text
    }

    func finish() {
        guard !finished else { return }
        finished = true
        wire = nil
        let open = exchanges
        exchanges = []
        for exchange in open { exchange.clientClosed() }
        sweeper?.remove(self)
        if admitted { listener.shared.admission.release() }
        if let limit = machine.limitHit { listener.shared.metrics.httpLimitHit(limit) }
        if let clientCertificate { log.metadata["client_cert"] = clientCertificate ? "present" : "none" }
        log.metadata["requests"] = "\(machine.requests)"
        log.ended(
            machine.end ?? .closed, trafficClass: firstClass ?? listener.shared.configuration.initialClass,
            node: lastNode, bytesIn: bytesIn, bytesOut: bytesOut, classified: classifiedAs,
            proxiedClient: proxiedClient, listener: listener.shared)
        // Last: whoever waits for the connection to go (a drain, shutdown) finds its line written.
        registry.unregister(ObjectIdentifier(self))
    }

    /// A TLS close without close_notify, or a reset, with no request in flight: a client that left.
    static func isCleanClose(_ error: any Error) -> Bool {
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
struct NodeExchangeHandle: @unchecked Sendable {
    let exchange: NodeExchange
}
