import BalancerCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

#if os(Linux)
import Glibc
#endif

/// One open listening socket, the settings its new connections follow, and its connections.
final class ListenerRuntime: Sendable {
    let socket: ListenerSocket
    let context: NIOLockedValueBox<ListenerContext>
    let connections: ListenerConnections

    init(socket: ListenerSocket, context: NIOLockedValueBox<ListenerContext>, connections: ListenerConnections) {
        self.socket = socket
        self.context = context
        self.connections = connections
    }
}

/// A listening socket: a NIO server channel, or (plain TCP listeners on Linux) one the splice loops accept from.
enum ListenerSocket: Sendable {
    case nio(any Channel)
    #if os(Linux)
    case plain(PlainListenerSocket)
    #endif

    var localAddress: SocketAddress? {
        switch self {
        case .nio(let channel): channel.localAddress
        #if os(Linux)
        case .plain(let socket): socket.localAddress
        #endif
        }
    }

    /// Stops accepting; open connections stay.
    func close() async {
        switch self {
        case .nio(let channel): try? await channel.close()
        #if os(Linux)
        case .plain(let socket): await socket.close()
        #endif
        }
    }
}

extension Balancer {
    /// Binds `listeners`; if one fails, closes those just bound and throws: all or nothing.
    func bindListeners(
        _ listeners: [ListenerConfiguration],
        timeouts: TimeoutSettings
    ) async throws -> [String: ListenerRuntime] {
        var bound: [String: ListenerRuntime] = [:]
        for listener in listeners {
            let context = NIOLockedValueBox(makeContext(listener, timeouts: timeouts))
            let tag = connections.newListenerKey()
            do {
                let socket = try await openSocket(listener, context: context, tag: tag)
                bound[listener.name] = ListenerRuntime(
                    socket: socket, context: context, connections: connections.of(tag))
            } catch {
                for runtime in bound.values { await runtime.socket.close() }
                throw BalancerError.bindFailed(listener: listener.name, address: listener.bind, reason: "\(error)")
            }
        }
        return bound
    }

    /// Opens the listeners of the starting configuration.
    func openListeners(_ listeners: [ListenerConfiguration]) async throws {
        let bound = try await bindListeners(listeners, timeouts: configuration.timeouts)
        state.withLockedValue { $0.listeners.merge(bound) { $1 } }
        for listener in listeners { logListening(listener) }
    }

    func logListening(_ listener: ListenerConfiguration) {
        logger.notice(
            "listening",
            metadata: [
                "listener": "\(listener.name)", "address": "\(listener.bind)",
                "class": "\(listener.classification.name)", "balance": "\(listener.balance.rawValue)",
            ])
    }

    func makeContext(_ listener: ListenerConfiguration, timeouts: TimeoutSettings) -> ListenerContext {
        var tls: PathListenerTLS?
        if case .byPath(let settings) = listener.classification {
            // Read from the files each time, so a reload picks up renewed certificates.
            do {
                tls = try PathListenerTLS(settings)
            } catch {
                logger.error(
                    "cannot load the listener's TLS certificates: its connections are closed",
                    metadata: ["listener": "\(listener.name)", "error": "\(error)"])
            }
        }
        var context = ListenerContext(
            configuration: listener,
            directory: directory,
            timeouts: timeouts,
            accessLogger: Self.listenerLogger(accessLogger, listener: listener.name),
            journal: journal,
            metrics: ListenerMetrics(listener: listener.name),
            tls: tls
        )
        context.makeNodeBootstraps(for: group)
        return context
    }

    private func openSocket(
        _ listener: ListenerConfiguration,
        context: NIOLockedValueBox<ListenerContext>,
        tag: Int
    ) async throws -> ListenerSocket {
        #if os(Linux)
        // Listeners bound to an IP address that terminate nothing (fixed class, or SNI peeked from
        // the ClientHello) take the splice path; by-path listeners terminate TLS and speak HTTP: NIO.
        if listener.classification.splicable,
            let address = try? SocketAddress(ipAddress: listener.bind.host, port: listener.bind.port)
        {
            return .plain(
                try await PlainListenerSocket.open(
                    address, name: listener.name, context: context, key: tag, registry: connections,
                    loops: try spliceLoops()
                ) { [weak self] fd, key in
                    self?.adopt(fd, context: context, tag: key) ?? { _ = Glibc.close(fd) }()
                })
        }
        #endif
        let channel = try await bootstrap(for: context, tag: tag)
            .bind(host: listener.bind.host, port: listener.bind.port).get()
        return .nio(channel)
    }

    private func bootstrap(
        for context: NIOLockedValueBox<ListenerContext>,
        tag: Int
    ) -> ServerBootstrap {
        ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // TCP_NODELAY is NIO's default on the listening socket, and accepted sockets inherit it
            // (`.socketOption(.tcp_nodelay)` would set SO_DEBUG: it is an SOL_SOCKET option).
            .serverChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.autoRead, value: false)
            .childChannelOption(.recvAllocator, value: Balancer.receiveBuffers)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer(connectionInitializer(context: context, tag: tag))
    }

    #if os(Linux)
    /// Takes an accepted client socket of a plain listener into NIO (a node named by host name).
    private func adopt(_ fd: CInt, context: NIOLockedValueBox<ListenerContext>, tag: Int) {
        ClientBootstrap(group: group)
            .channelOption(.autoRead, value: false)
            .channelOption(.recvAllocator, value: Balancer.receiveBuffers)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer(connectionInitializer(context: context, tag: tag))
            .withConnectedSocket(fd)
            .whenFailure { [logger] error in
                logger.error("cannot take over a client connection", metadata: ["error": "\(error)"])
            }
    }

    /// The splice loops, started with the first plain listener; as many as the event loops.
    private func spliceLoops() throws -> SpliceLoops {
        try splice.withLockedValue { state in
            switch state {
            case .running(let loops):
                return loops
            case .idle:
                let loops = try SpliceLoops(count: Array(group.makeIterator()).count, logger: logger)
                state = .running(loops)
                return loops
            case .stopped:
                throw BalancerError.shuttingDown
            }
        }
    }
    #endif

    /// The initializer of an accepted client channel, accepted by NIO or handed over by a splice loop.
    private func connectionInitializer(
        context: NIOLockedValueBox<ListenerContext>, tag: Int
    ) -> @Sendable (any Channel) -> EventLoopFuture<Void> {
        let registry = connections
        let sweepers = idleSweepers
        return { channel in
            channel.eventLoop.makeCompletedFuture {
                try Self.setUpConnection(channel, context: context, tag: tag, registry: registry, sweepers: sweepers)
            }
        }
    }

    /// Sets up the pipeline of an accepted client channel.
    private static func setUpConnection(
        _ channel: any Channel,
        context: NIOLockedValueBox<ListenerContext>,
        tag: Int,
        registry: ConnectionRegistry,
        sweepers: IdleSweepers
    ) throws {
        // Each connection takes the listener's settings as they are when it arrives.
        let listener = context.withLockedValue { $0 }
        registry.register(channel, listener: tag)
        let record = ConnectionRecord(
            logger: listener.accessLogger,
            client: channel.remoteAddress,
            trafficClass: listener.configuration.initialClass,
            metrics: listener.metrics
        )
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(
            ConnectionGuard(
                record: record, side: "client", idleTimeout: TimeAmount(listener.timeouts.idle),
                sweeper: sweepers.sweeper(for: channel.eventLoop))
        )
        if case .bySNI(let rules) = listener.configuration.classification {
            try sync.addHandler(
                SNIClassifier(
                    rules: rules, timeout: listener.configuration.handshakeTimeout, record: record,
                    listener: listener.configuration.name))
        }
        if case .byPath(let settings) = listener.configuration.classification {
            guard let tls = listener.tls else {
                record.end("handshake-failed", reason: "the listener's TLS certificates could not be loaded")
                record.log()
                throw ChannelError.ioOnClosedChannel
            }
            try sync.addHandler(NIOSSLServerHandler(context: tls.server))
            try sync.addHandler(
                PathClassifier(
                    rules: settings.rules, timeout: listener.configuration.handshakeTimeout, record: record,
                    listener: listener.configuration.name))
        }
        try sync.addHandler(ProxyHandler(listener: listener, record: record))
    }

    func listenerRuntime(_ name: String) -> ListenerRuntime? {
        state.withLockedValue { $0.listeners[name] }
    }

    /// The access logger of one listener: its name is set once, not per connection.
    private static func listenerLogger(_ logger: Logger, listener: String) -> Logger {
        var logger = logger
        logger[metadataKey: "listener"] = "\(listener)"
        return logger
    }

    static func describe(_ address: SocketAddress) -> String {
        guard let ip = address.ipAddress, let port = address.port else { return "\(address)" }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }
}

extension ListenerConfiguration {
    /// The class a connection has before anything is known about it.
    var initialClass: TrafficClass {
        switch classification {
        case .fixed(let trafficClass): trafficClass
        case .bySNI(let rules): rules.defaultClass
        case .byPath(let settings): settings.rules.defaultClass
        }
    }
}

extension ListenerClassification {
    /// Bytes pass through untouched (at most peeked), so the splice path can carry them.
    var splicable: Bool {
        switch self {
        case .fixed, .bySNI: true
        case .byPath: false
        }
    }

    /// The `class` value as written in the configuration.
    public var name: String {
        switch self {
        case .fixed(let trafficClass): trafficClass.rawValue
        case .bySNI: "by-sni"
        case .byPath: "by-path"
        }
    }
}
