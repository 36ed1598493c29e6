import AsyncHTTPClient
import BalancerCore
import BalancerStore
import Foundation
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
    private let httpClient: HTTPClient?
    /// The append-only event journal (in the state database when one is configured).
    public let journal: Journal
    private let store: StateStore?
    private let coordinator: UpdateCoordinator

    /// A balancer for `configuration`; `store` keeps the update run and journal, `initialRun` is the
    /// run persisted there (load it first, so status shows it before the first probe).
    public init(
        configuration: BalancerConfiguration,
        group: any EventLoopGroup,
        logger: Logger,
        accessLogger: Logger? = nil,
        store: StateStore? = nil,
        initialRun: UpdateRun? = nil
    ) {
        self.configuration = configuration
        self.group = group
        self.logger = logger
        self.accessLogger = accessLogger ?? logger
        self.store = store
        self.journal = Journal(store: store, logger: logger)
        // Without a status probe a reachable node is taken to be a UMS Server in normal mode.
        let assumedMode: NodeMode = configuration.status == nil ? .normal : .unknown
        self.directory = NodeDirectory(nodes: configuration.nodes, consolePolicy: configuration.update.console) {
            NodeStatus(id: $0, health: .down, mode: assumedMode)
        }
        self.listeningPromise = group.next().makePromise(of: Void.self)
        let httpClient = Self.makeHTTPClient(configuration, group: group)
        self.httpClient = httpClient
        let caller = configuration.reconnect.map {
            ReconnectCaller(action: $0.action, callTimeout: min($0.timeout, .seconds(10)), httpClient: httpClient)
        }
        self.coordinator = UpdateCoordinator(
            configuration: configuration, initialRun: initialRun, directory: directory, caller: caller,
            store: store, journal: journal, logger: logger)
    }

    /// The update run as it stands.
    public func updateRun() async -> UpdateRun {
        await coordinator.run
    }

    /// Re-arms a stalled update run; false when it is not stalled.
    public func retryReconnect(actor: String) async -> Bool {
        await coordinator.retryReconnect(actor: actor)
    }

    /// Completes once every listener is open; fails if one cannot be.
    public var listening: EventLoopFuture<Void> { listeningPromise.futureResult }

    /// The address a listener is bound to, once open.
    public func localAddress(ofListener name: String) -> SocketAddress? {
        listenerChannels.withLockedValue { $0[name]?.localAddress }
    }

    public func run() async throws {
        let coordinator = self.coordinator
        let journal = self.journal
        let monitor = NodeMonitor(
            nodes: configuration.nodes,
            health: configuration.health,
            probe: NodeProbe(kind: probeKind, timeout: probeTimeout, group: group, httpClient: httpClient),
            directory: directory,
            journal: journal,
            logger: logger,
            onChange: { await coordinator.nodesChanged() }
        )
        journal.record(
            .balancer, "started with \(configuration.nodes.count) nodes and \(configuration.listeners.count) listeners")
        let journalWriter = Task { await journal.run() }
        await coordinator.resume()
        do {
            try await cancelWhenGracefulShutdown {
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    tasks.addTask { try await coordinator.run() }
                    tasks.addTask { try await monitor.run(firstRoundDone: { try await self.openListeners() }) }
                    try await tasks.next()
                }
            }
        } catch is CancellationError {
            // Graceful shutdown: fall through to draining.
        } catch {
            listeningPromise.fail(error)
            await closeListeners()
            await stopBackground(journalWriter)
            throw error
        }
        listeningPromise.fail(CancellationError())
        await drain()
        await stopBackground(journalWriter)
    }

    private func stopBackground(_ journalWriter: Task<Void, Never>) async {
        journal.record(.balancer, "stopped")
        journal.finish()
        await journalWriter.value
        try? await httpClient?.shutdown()
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

    private static func makeHTTPClient(_ configuration: BalancerConfiguration, group: any EventLoopGroup) -> HTTPClient?
    {
        let usesHTTP = [configuration.status?.action, configuration.reconnect?.action].contains {
            if case .url = $0 { true } else { false }
        }
        guard usesHTTP else { return nil }
        var settings = HTTPClient.Configuration()
        let timeout = TimeAmount(configuration.status?.timeout ?? configuration.health.timeout)
        settings.timeout = .init(connect: timeout, read: .seconds(10))
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
                accessLogger: accessLogger,
                journal: journal
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
