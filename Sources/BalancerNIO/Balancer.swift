import AsyncHTTPClient
import BalancerCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Listener failures at start: the whole start fails, nothing half-opens.
public enum BalancerError: Error, CustomStringConvertible {
    /// A listener's address could not be bound.
    case bindFailed(listener: String, address: Endpoint, reason: String)

    public var description: String {
        switch self {
        case .bindFailed(let listener, let address, let reason):
            "listener '\(listener)': cannot listen on \(address): \(reason)"
        }
    }
}

/// The running balancer: probes the nodes, opens the listeners once every node has had its first
/// probe, proxies connections, and on graceful shutdown stops accepting and lets connections finish
/// up to `shutdown_grace`.
public final class Balancer: Service, Sendable {
    public let configuration: BalancerConfiguration
    public let directory: NodeDirectory
    public let connections = ConnectionRegistry()
    private let group: any EventLoopGroup
    private let logger: Logger
    private let accessLogger: Logger
    private let listenerChannels = NIOLockedValueBox<[String: any Channel]>([:])
    private let listeningPromise: EventLoopPromise<Void>

    public init(
        configuration: BalancerConfiguration,
        group: any EventLoopGroup,
        logger: Logger,
        accessLogger: Logger? = nil
    ) {
        self.configuration = configuration
        self.group = group
        self.logger = logger
        self.accessLogger = accessLogger ?? logger
        // Without a status probe a reachable node is taken to be a UMS Server in normal mode.
        let assumedMode: NodeMode = configuration.status == nil ? .normal : .unknown
        self.directory = NodeDirectory(nodes: configuration.nodes, consolePolicy: configuration.update.console) {
            NodeStatus(id: $0, health: .down, mode: assumedMode)
        }
        self.listeningPromise = group.next().makePromise(of: Void.self)
    }

    /// Completes once every listener is open; fails if one cannot be.
    public var listening: EventLoopFuture<Void> { listeningPromise.futureResult }

    /// The address a listener is bound to, once open.
    public func localAddress(ofListener name: String) -> SocketAddress? {
        listenerChannels.withLockedValue { $0[name]?.localAddress }
    }

    public func run() async throws {
        let httpClient = makeHTTPClient()
        let monitor = NodeMonitor(
            nodes: configuration.nodes,
            health: configuration.health,
            probe: NodeProbe(kind: probeKind, timeout: probeTimeout, group: group, httpClient: httpClient),
            directory: directory,
            logger: logger
        )
        defer { if let httpClient { Task { try? await httpClient.shutdown() } } }
        do {
            try await cancelWhenGracefulShutdown {
                try await monitor.run(firstRoundDone: { try await self.openListeners() })
            }
        } catch is CancellationError {
            // Graceful shutdown: fall through to draining.
        } catch {
            listeningPromise.fail(error)
            await closeListeners()
            throw error
        }
        listeningPromise.fail(CancellationError())
        await drain()
    }

    private var probeKind: NodeProbe.Kind {
        switch configuration.status?.action {
        case .url(let template): .httpStatus(urlTemplate: template)
        case .command(let words): .command(words)
        case nil: .tcpConnect(port: configuration.healthPort ?? 0)
        }
    }

    private var probeTimeout: Duration {
        configuration.status?.timeout ?? configuration.health.timeout
    }

    private func makeHTTPClient() -> HTTPClient? {
        guard case .url = configuration.status?.action else { return nil }
        var settings = HTTPClient.Configuration()
        settings.timeout = .init(connect: TimeAmount(probeTimeout), read: TimeAmount(probeTimeout))
        settings.redirectConfiguration = .disallow
        settings.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 2)
        return HTTPClient(eventLoopGroupProvider: .shared(group), configuration: settings)
    }

    // MARK: - Listeners

    private func openListeners() async throws {
        for listener in configuration.listeners {
            let context = ListenerContext(
                configuration: listener,
                directory: directory,
                timeouts: configuration.timeouts,
                accessLogger: accessLogger
            )
            do {
                let channel = try await bootstrap(for: context).bind(host: listener.bind.host, port: listener.bind.port)
                    .get()
                listenerChannels.withLockedValue { $0[listener.name] = channel }
                logger.notice(
                    "listening",
                    metadata: [
                        "listener": "\(listener.name)", "address": "\(listener.bind)",
                        "class": "\(listener.classification)", "balance": "\(listener.balance.rawValue)",
                    ])
            } catch {
                throw BalancerError.bindFailed(listener: listener.name, address: listener.bind, reason: "\(error)")
            }
        }
        listeningPromise.succeed()
    }

    private func bootstrap(for listener: ListenerContext) -> ServerBootstrap {
        let registry = connections
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.autoRead, value: false)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    registry.register(channel)
                    let record = ConnectionRecord(
                        logger: Self.connectionLogger(listener, channel: channel),
                        trafficClass: listener.configuration.initialClass
                    )
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(IdleStateHandler(allTimeout: TimeAmount(listener.timeouts.idle)))
                    try sync.addHandler(ConnectionGuard(record: record, side: "client"))
                    if case .bySNI(let rules) = listener.configuration.classification {
                        try sync.addHandler(
                            SNIClassifier(
                                rules: rules, timeout: listener.configuration.handshakeTimeout, record: record,
                                listener: listener.configuration.name))
                    }
                    try sync.addHandler(ProxyHandler(listener: listener, record: record))
                }
            }
    }

    private static func connectionLogger(_ listener: ListenerContext, channel: any Channel) -> Logger {
        var logger = listener.accessLogger
        logger[metadataKey: "listener"] = "\(listener.configuration.name)"
        logger[metadataKey: "client"] = "\(channel.remoteAddress.map(Self.describe) ?? "unknown")"
        return logger
    }

    static func describe(_ address: SocketAddress) -> String {
        guard let ip = address.ipAddress, let port = address.port else { return "\(address)" }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }

    // MARK: - Shutdown

    private func closeListeners() async {
        let channels = listenerChannels.withLockedValue { channels in
            defer { channels = [:] }
            return Array(channels.values)
        }
        for channel in channels {
            try? await channel.close()
        }
    }

    private func drain() async {
        await closeListeners()
        let open = connections.count
        logger.notice(
            "shutting down: stopped accepting",
            metadata: ["open_connections": "\(open)", "grace": "\(DurationText.format(configuration.shutdownGrace))"])
        let deadline = ContinuousClock.now + configuration.shutdownGrace
        if await !connections.waitUntilEmpty(deadline: deadline) {
            logger.warning(
                "shutdown grace over: closing remaining connections",
                metadata: ["open_connections": "\(connections.count)"])
            connections.closeAll()
            _ = await connections.waitUntilEmpty(deadline: .now + .seconds(2))
        }
        logger.notice("shut down")
    }
}

extension ListenerConfiguration {
    /// The class a connection has before anything is known about it.
    var initialClass: TrafficClass {
        switch classification {
        case .fixed(let trafficClass): trafficClass
        case .bySNI(let rules): rules.defaultClass
        }
    }
}
