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
    /// The control plane's time: probe intervals, update-run deadlines, reload times.
    let clock: any BalancerClock
    /// Probes the nodes; the listeners open after its first round.
    let probes: ProbeService
    /// Listeners a reload removed, handed to `run()` to drain.
    let retirements = AsyncStream<ListenerRuntime>.makeStream()
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
    }

    /// A balancer for `configuration`; `store` keeps the update run and journal, `initialRun` is the
    /// run persisted there (load it first, so status shows it before the first probe), `initialDrive`
    /// the driven update persisted there.
    public init(
        configuration: BalancerConfiguration,
        group: any EventLoopGroup,
        logger: Logger,
        accessLogger: Logger? = nil,
        store: StateStore? = nil,
        initialRun: UpdateRun? = nil,
        initialDrive: UpdateDrive? = nil,
        dataPath: DataPath = .automatic,
        socketActivation: SocketActivation? = nil,
        clock: any BalancerClock = SystemClock()
    ) {
        self.clock = clock
        self.dataPath = dataPath
        self.socketActivation = socketActivation
        self.descriptors = DescriptorBudget.fromOpenFileLimit(logger: logger)
        self.group = group
        self.logger = logger
        self.accessLogger = accessLogger ?? logger
        self.store = store
        self.journal = Journal(store: store, logger: logger)
        self.state = NIOLockedValueBox(
            RuntimeState(configuration: configuration, lastReload: ReloadReport(ok: true, at: clock.now(), error: nil)))
        self.directory = NodeDirectory(nodes: configuration.nodes, consolePolicy: configuration.update.console) {
            _ in Self.initialObservation(configuration)
        }
        self.listeningPromise = group.next().makePromise(of: Void.self)
        self.relaySweepers = RelaySweepers(group: group)
        self.httpClient = Self.makeHTTPClient(group: group)
        self.coordinator = UpdateCoordinator(
            configuration: configuration, initialRun: initialRun, initialDrive: initialDrive, directory: directory,
            httpClient: httpClient,
            store: store, journal: journal, logger: logger, clock: clock
        ) { [connections] node, count in connections.drain(node, atMost: count) }
        self.probes = ProbeService(
            configuration: configuration,
            // A persisted run is picked up again before the first probe result reaches it.
            prepare: { [coordinator] in await coordinator.resume() },
            makeMonitor: Self.monitors(
                coordinator: coordinator, directory: directory, journal: journal, group: group,
                httpClient: httpClient, clock: clock, logger: logger))
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
    static func initialObservation(_ configuration: BalancerConfiguration) -> NodeObservation {
        NodeObservation(health: .down, mode: configuration.status == nil ? .normal : .unknown)
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

    /// The long-running parts of the balancer, as `Service`s in the order a `ServiceGroup` wants
    /// them: each is shut down after the ones behind it. The listeners (this object) go first,
    /// draining their connections; the coordinator and the probes then stop, the relay's threads
    /// after the connections they carried, and the journal last, so that every event is written.
    public var services: [any Service] {
        [JournalWriter(journal: journal), RelayService(balancer: self), probes, CoordinatorService(coordinator), self]
    }

    /// The listeners: they open once every node has had its first probe, serve until graceful
    /// shutdown, then stop accepting and let connections finish up to `shutdown_grace` (cancelled:
    /// at once). Listeners a reload removed drain in here too.
    public func run() async throws {
        let configuration = self.configuration
        journal.record(
            .balancer, "started with \(configuration.nodes.count) nodes and \(configuration.listeners.count) listeners")
        do {
            try await cancelWhenGracefulShutdown { try await self.probes.firstRoundDone() }
            await coordinator.firstProbeRoundDone()
            try await openListeners(configuration.listeners)
        } catch is CancellationError {
            listeningPromise.fail(CancellationError())
            await closeListeners()
            journal.record(.balancer, "stopped before the listeners opened")
            return
        } catch {
            listeningPromise.fail(error)
            await closeListeners()
            throw error
        }
        serving.withLockedValue { $0 = true }
        listeningPromise.succeed()
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                for await runtime in self.retirements.stream {
                    group.addTask { await self.retire(runtime) }
                }
            }
        }
        serving.withLockedValue { $0 = false }
        await drain(grace: Task.isCancelled ? .zero : self.configuration.shutdownGrace)
        journal.record(.balancer, "stopped")
    }

    /// The relay's threads are running (some listener is relayed).
    var relayIsRunning: Bool {
        #if os(Linux)
        relay.withLockedValue { if case .running = $0 { true } else { false } }
        #else
        false
        #endif
    }

    /// Stops the relay's threads; a reload racing it gets none.
    func stopRelayLoops() async {
        #if os(Linux)
        let running = relay.withLockedValue { state -> RelayLoops? in
            defer { state = .stopped }
            if case .running(let loops) = state { return loops }
            return nil
        }
        await running?.stop()
        #endif
    }

    /// Stops the HTTP client of the probes and reconnect calls; once, after the services stopped.
    public func shutDownClients() async {
        try? await httpClient.shutdown()
    }

    /// Makes the probe monitor for a configuration's nodes and probe.
    private static func monitors(
        coordinator: UpdateCoordinator, directory: NodeDirectory, journal: Journal, group: any EventLoopGroup,
        httpClient: HTTPClient, clock: any BalancerClock, logger: Logger
    ) -> @Sendable (BalancerConfiguration) -> NodeMonitor {
        { configuration in
            NodeMonitor(
                nodes: configuration.nodes,
                health: configuration.health,
                probe: NodeProbe(
                    kind: Self.probeKind(configuration),
                    timeout: configuration.status?.timeout ?? configuration.health.timeout,
                    group: group, httpClient: httpClient),
                directory: directory,
                journal: journal,
                clock: clock,
                logger: logger,
                onChange: { await coordinator.nodesChanged() }
            )
        }
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

    private func drain(grace: Duration) async {
        await closeListeners()
        // Keep-alive connections take no new request: idle ones close now, busy ones after their answer.
        connections.quiesceAll()
        logger.notice(
            "shutting down: stopped accepting",
            metadata: ["open_connections": "\(connections.count)", "grace": "\(DurationText.format(grace))"])
        let drained =
            grace == .zero ? connections.count == 0 : await connections.waitUntilEmpty(deadline: .now + grace)
        if !drained {
            logger.warning(
                "shutdown grace over: closing remaining connections",
                metadata: ["open_connections": "\(connections.count)"])
            connections.closeAll()
            _ = await connections.waitUntilEmpty(deadline: .now + .seconds(2))
        }
        logger.notice("shut down")
    }
}
