import AsyncHTTPClient
import BalancerCore
import BalancerDataPath
import BalancerRelay
import BalancerStore
import Foundation
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Listener failures: at start the whole start fails, on reload the whole reload; nothing half-opens.
public enum BalancerError: Error, CustomStringConvertible {
    /// A listener's address could not be bound.
    case bindFailed(listener: String, address: Endpoint, reason: String)
    /// The balancer has shut down; nothing new opens.
    case shuttingDown

    public var description: String {
        switch self {
        case .bindFailed(let listener, let address, let reason):
            "listener '\(listener)': cannot listen on \(address): \(reason)"
        case .shuttingDown:
            "the balancer is shutting down"
        }
    }
}

/// Which executor of the connection machine carries the listeners that terminate nothing.
public enum DataPath: String, Sendable, Hashable, CaseIterable {
    /// The epoll relay on Linux for listeners bound to an IP address; NIO otherwise.
    case automatic
    /// NIO channels for every listener (what other platforms use; tests run the suite over both).
    case nio
}

/// The running balancer: probes the nodes, opens the listeners once every node has had its first
/// probe, proxies connections, tracks the update run, reloads its configuration in place, and on
/// graceful shutdown stops accepting and lets connections finish up to `shutdown_grace`.
public final class Balancer: Service, Sendable {
    public let directory: NodeDirectory
    /// Every client connection, across listeners (shutdown waits for these).
    public let connections = ConnectionRegistry()
    /// Looks at the NIO executor's connection timers, one timer per event loop.
    let relaySweepers: RelaySweepers
    /// Which executor carries listeners that terminate nothing.
    let dataPath: DataPath
    /// Listening sockets systemd passed, used instead of binding when the listeners first open.
    let socketActivation: SocketActivation?
    /// The descriptors proxied connections may hold, across listeners and executors.
    public let descriptors: DescriptorBudget
    /// The connection limits checked at accept (balancer-wide and per listener).
    let admission = Admission()
    /// Runs reloads one at a time.
    let reloadGate = SerialGate()
    /// The append-only event journal (in the state database when one is configured).
    public let journal: Journal
    let group: any EventLoopGroup
    let logger: Logger
    let accessLogger: Logger
    let state: NIOLockedValueBox<RuntimeState>
    private let listeningPromise: EventLoopPromise<Void>
    /// Listeners open and no shutdown begun: what `GET /healthz` answers.
    let serving = NIOLockedValueBox(false)
    let httpClient: HTTPClient
    private let store: StateStore?
    /// How the state database is doing; nil when none is configured.
    public var stateCondition: StoreCondition? { store?.condition }
    let coordinator: UpdateCoordinator
    #if os(Linux)
    /// The relay's threads, started with the first relayed listener.
    let relay = NIOLockedValueBox(RelayState.idle)

    enum RelayState {
        case idle
        case running(RelayLoops)
        /// The balancer has shut down: a reload racing it gets no new threads.
        case stopped
    }
    #endif

    /// What a reload replaces, under one lock.
    struct RuntimeState {
        var configuration: BalancerConfiguration
        var listeners: [String: ListenerRuntime] = [:]
        var generation = 1
        var lastReload: ReloadReport
        var monitor: Task<Void, any Error>?
    }

    /// A balancer for `configuration`; `store` keeps the update run and journal, `initialRun` is the
    /// run persisted there (load it first, so status shows it before the first probe).
    public init(
        configuration: BalancerConfiguration,
        group: any EventLoopGroup,
        logger: Logger,
        accessLogger: Logger? = nil,
        store: StateStore? = nil,
        initialRun: UpdateRun? = nil,
        dataPath: DataPath = .automatic,
        socketActivation: SocketActivation? = nil
    ) {
        self.dataPath = dataPath
        self.socketActivation = socketActivation
        self.descriptors = DescriptorBudget.fromOpenFileLimit(logger: logger)
        self.group = group
        self.logger = logger
        self.accessLogger = accessLogger ?? logger
        self.store = store
        self.journal = Journal(store: store, logger: logger)
        self.state = NIOLockedValueBox(
            RuntimeState(configuration: configuration, lastReload: ReloadReport(ok: true, at: Date(), error: nil)))
        self.directory = NodeDirectory(nodes: configuration.nodes, consolePolicy: configuration.update.console) {
            Self.initialStatus(of: $0, configuration)
        }
        self.listeningPromise = group.next().makePromise(of: Void.self)
        self.relaySweepers = RelaySweepers(group: group)
        self.httpClient = Self.makeHTTPClient(group: group)
        self.coordinator = UpdateCoordinator(
            configuration: configuration, initialRun: initialRun, directory: directory, httpClient: httpClient,
            store: store, journal: journal, logger: logger
        ) { [connections] node, count in connections.drain(node, atMost: count) }
        configureLimits(configuration)
        directory.onPassiveHealth { [journal, logger] event in
            Self.report(event, journal: journal, logger: logger)
        }
    }

    /// Applies the limits and passive-health settings of `configuration` to new connections.
    func configureLimits(_ configuration: BalancerConfiguration) {
        admission.configure(configuration.limits)
        directory.configure(
            passive: configuration.health.passive, slowStart: configuration.update.slowStart,
            nodes: configuration.nodes)
    }

    /// Journals, logs and counts what passive health did to a node.
    private static func report(_ event: PassiveHealthEvent, journal: Journal, logger: Logger) {
        switch event {
        case .ejected(let node, let duration, let failures, let reason):
            logger.warning(
                "passive health: node out of rotation",
                metadata: [
                    "node": "\(node)", "for": "\(DurationText.format(duration))",
                    "failures": "\(failures)", "last": "\(reason)",
                ])
            journal.record(
                .health, node: node, actor: "passive-health",
                "out of rotation for \(DurationText.format(duration)) after \(failures) failed connections (\(reason))")
            Counter(label: "ums_balancer_node_ejections_total", dimensions: [("node", node)]).increment()
        case .returned(let node):
            logger.notice("passive health: node back in rotation, slow start", metadata: ["node": "\(node)"])
            journal.record(.health, node: node, actor: "passive-health", "back in rotation (slow start)")
        }
    }

    /// A node's state before its first probe. Without a status probe a reachable node is taken to
    /// be a UMS Server in normal mode.
    static func initialStatus(of id: NodeID, _ configuration: BalancerConfiguration) -> NodeStatus {
        NodeStatus(id: id, health: .down, mode: configuration.status == nil ? .normal : .unknown)
    }

    /// The configuration in force.
    public var configuration: BalancerConfiguration {
        state.withLockedValue { $0.configuration }
    }

    /// The update run as it stands.
    public func updateRun() async -> UpdateRun {
        await coordinator.run
    }

    /// Re-arms a stalled update run; false when it is not stalled.
    public func retryReconnect(actor: String) async -> Bool {
        await coordinator.retryReconnect(actor: actor)
    }

    /// Every listener is open and no shutdown has begun (false while starting and while draining).
    public var isServing: Bool { serving.withLockedValue { $0 } }

    /// Completes once every listener is open; fails if one cannot be.
    public var listening: EventLoopFuture<Void> { listeningPromise.futureResult }

    /// The address a listener is bound to, once open.
    public func localAddress(ofListener name: String) -> SocketAddress? {
        state.withLockedValue { $0.listeners[name]?.socket.localAddress }
    }

    // MARK: - Running

    public func run() async throws {
        let coordinator = self.coordinator
        let journal = self.journal
        let configuration = self.configuration
        journal.record(
            .balancer, "started with \(configuration.nodes.count) nodes and \(configuration.listeners.count) listeners")
        let journalWriter = Task { await journal.run() }
        await coordinator.resume()
        let opened = AsyncStream<Result<Void, any Error>>.makeStream()
        startMonitor(configuration) {
            do {
                try await self.openListeners(configuration.listeners)
                self.serving.withLockedValue { $0 = true }
                self.listeningPromise.succeed()
                opened.continuation.yield(.success(()))
            } catch {
                opened.continuation.yield(.failure(error))
                throw error
            }
        }
        do {
            try await cancelWhenGracefulShutdown {
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    tasks.addTask { try await coordinator.run() }
                    for await result in opened.stream {
                        try result.get()
                        break
                    }
                    try await tasks.next()
                }
            }
        } catch is CancellationError {
            // Graceful shutdown: fall through to draining.
        } catch {
            serving.withLockedValue { $0 = false }
            listeningPromise.fail(error)
            stopMonitor()
            await closeListeners()
            await stopRelayLoops()
            await stopBackground(journalWriter)
            throw error
        }
        serving.withLockedValue { $0 = false }
        listeningPromise.fail(CancellationError())
        stopMonitor()
        await drain()
        await stopRelayLoops()
        await stopBackground(journalWriter)
    }

    /// The relay's threads are running (some listener is relayed).
    var relayIsRunning: Bool {
        #if os(Linux)
        relay.withLockedValue { if case .running = $0 { true } else { false } }
        #else
        false
        #endif
    }

    private func stopRelayLoops() async {
        #if os(Linux)
        let running = relay.withLockedValue { state -> RelayLoops? in
            defer { state = .stopped }
            if case .running(let loops) = state { return loops }
            return nil
        }
        await running?.stop()
        #endif
    }

    /// (Re)starts probing with `configuration`'s nodes and probe; `firstRoundDone` runs once after
    /// the first probe of every node.
    func startMonitor(
        _ configuration: BalancerConfiguration,
        firstRoundDone: @escaping @Sendable () async throws -> Void = {}
    ) {
        let coordinator = self.coordinator
        let monitor = NodeMonitor(
            nodes: configuration.nodes,
            health: configuration.health,
            probe: NodeProbe(
                kind: Self.probeKind(configuration),
                timeout: configuration.status?.timeout ?? configuration.health.timeout,
                group: group, httpClient: httpClient),
            directory: directory,
            journal: journal,
            logger: logger,
            onChange: { await coordinator.nodesChanged() }
        )
        let task = Task { try await monitor.run(firstRoundDone: firstRoundDone) }
        let previous = state.withLockedValue { state in
            defer { state.monitor = task }
            return state.monitor
        }
        previous?.cancel()
    }

    private func stopMonitor() {
        state.withLockedValue { $0.monitor }?.cancel()
    }

    private func stopBackground(_ journalWriter: Task<Void, Never>) async {
        journal.record(.balancer, "stopped")
        journal.finish()
        await journalWriter.value
        try? await httpClient.shutdown()
    }

    private static func probeKind(_ configuration: BalancerConfiguration) -> NodeProbe.Kind {
        switch configuration.status?.action {
        case .url(let template): .httpStatus(urlTemplate: template)
        case .command(let words): .command(words)
        case nil: .tcpConnect(port: configuration.healthPort ?? 0)
        }
    }

    private static func makeHTTPClient(group: any EventLoopGroup) -> HTTPClient {
        var settings = HTTPClient.Configuration()
        settings.timeout = .init(connect: .seconds(5), read: .seconds(10))
        settings.redirectConfiguration = .disallow
        settings.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 2)
        return HTTPClient(eventLoopGroupProvider: .shared(group), configuration: settings)
    }

    // MARK: - Shutdown

    func closeListeners() async {
        let listeners = state.withLockedValue { state in
            defer { state.listeners = [:] }
            return Array(state.listeners.values)
        }
        for listener in listeners {
            await listener.socket.close()
        }
    }

    private func drain() async {
        await closeListeners()
        // Keep-alive connections take no new request: idle ones close now, busy ones after their answer.
        connections.quiesceAll()
        let grace = configuration.shutdownGrace
        logger.notice(
            "shutting down: stopped accepting",
            metadata: ["open_connections": "\(connections.count)", "grace": "\(DurationText.format(grace))"])
        if await !connections.waitUntilEmpty(deadline: ContinuousClock.now + grace) {
            logger.warning(
                "shutdown grace over: closing remaining connections",
                metadata: ["open_connections": "\(connections.count)"])
            connections.closeAll()
            _ = await connections.waitUntilEmpty(deadline: .now + .seconds(2))
        }
        logger.notice("shut down")
    }
}
