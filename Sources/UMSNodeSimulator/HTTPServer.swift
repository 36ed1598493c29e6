import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One listening HTTP port that can be closed gracefully and opened again on the same address.
final class HTTPServer: Sendable {
    /// Thrown by `open()` once the server has been retired.
    struct RetiredError: Error {}

    /// The certificate and key a TLS port presents.
    struct TLSFiles: Sendable {
        var certificate: String
        var key: String
    }

    private struct State {
        var port: Int
        var listener: (any Channel)?
        var tracker = ConnectionTracker()
        var retired = false
        var accepted = 0
    }

    let name: String
    let host: String
    private let group: any EventLoopGroup
    private let responder: HTTPResponder
    private let logger: Logger
    private let tls: TLSFiles?
    private let webSocket: WebSocketEndpoint?
    private let state: Locked<State>

    init(
        name: String, host: String, port: Int, group: any EventLoopGroup, logger: Logger, tls: TLSFiles? = nil,
        webSocket: WebSocketEndpoint? = nil, responder: @escaping HTTPResponder
    ) {
        self.tls = tls
        self.webSocket = webSocket
        self.name = name
        self.host = host
        self.group = group
        self.logger = logger
        self.responder = responder
        self.state = Locked(State(port: port))
    }

    /// The port bound (or to bind, before the first `open()`).
    var port: Int { state.withLock { $0.port } }

    /// Whether the listening socket is open.
    var isOpen: Bool { state.withLock { $0.listener != nil } }

    /// Connections accepted since the server was made, over every listening period: what shows
    /// whether a proxy in front reuses its connections.
    var connectionsAccepted: Int { state.withLock { $0.accepted } }

    /// Binds host:port (a port of 0 picks a free one, kept for later re-opens).
    func open() async throws {
        let (port, tracker) = try state.withLock { state in
            guard !state.retired else { throw RetiredError() }
            state.tracker = ConnectionTracker()
            return (state.port, state.tracker)
        }
        let responder = self.responder
        let webSocket = self.webSocket
        // Read the files at each open, as a restarted server would.
        let tlsContext = try tls.map { files in
            try NIOSSLContext(
                configuration: .makeServerConfiguration(
                    certificateChain: try NIOSSLCertificate.fromPEMFile(files.certificate).map { .certificate($0) },
                    privateKey: .privateKey(try NIOSSLPrivateKey(file: files.key, format: .pem))))
        }
        let state = self.state
        let listener = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 256)
            .childChannelInitializer { channel in
                guard tracker.add(channel) else { return channel.close() }
                state.withLock { $0.accepted += 1 }
                return channel.eventLoop.makeCompletedFuture {
                    if let tlsContext {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tlsContext))
                    }
                    let sync = channel.pipeline.syncOperations
                    if let webSocket {
                        try sync.configureHTTPServerPipeline(
                            withServerUpgrade: (
                                upgraders: [webSocket.upgrader()],
                                completionHandler: { context in
                                    // Upgraded, the connection carries frames: the HTTP answerer steps aside.
                                    context.pipeline.syncOperations.removeHandler(
                                        name: HTTPConnectionHandler.name, promise: nil)
                                }
                            ), withErrorHandling: true)
                    } else {
                        try sync.configureHTTPServerPipeline(withErrorHandling: true)
                    }
                    try sync.addHandler(HTTPConnectionHandler(responder: responder), name: HTTPConnectionHandler.name)
                }
            }
            .bind(host: host, port: port).get()
        let keep = state.withLock { state in
            guard !state.retired, state.listener == nil else { return false }
            state.listener = listener
            state.port = listener.localAddress?.port ?? port
            return true
        }
        guard keep else {
            try? await listener.close()
            throw RetiredError()
        }
        logger.debug("\(name) port open", metadata: ["address": "\(host):\(self.port)"])
    }

    /// Stops accepting and tells open connections to finish; returns once the listening socket is closed.
    func close() async {
        let (listener, tracker) = state.withLock { state in
            defer { state.listener = nil }
            return (state.listener, state.tracker)
        }
        try? await listener?.close()
        tracker.goDown()
        if listener != nil { logger.debug("\(name) port closed", metadata: ["address": "\(host):\(port)"]) }
    }

    /// Waits until the connections of the last listening period are closed (forcing them after `timeout`).
    func waitUntilDrained(timeout: Duration) async {
        let tracker = state.withLock { $0.tracker }
        await tracker.waitUntilClosed(timeout: timeout)
    }

    /// Closes for good: later `open()` calls fail.
    func retire(drainTimeout: Duration) async {
        state.withLock { $0.retired = true }
        await close()
        await waitUntilDrained(timeout: drainTimeout)
    }
}
