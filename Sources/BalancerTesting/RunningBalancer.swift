import BalancerApp
import BalancerCore
import BalancerNIO
import BalancerStore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Backends standing in for the same port on several UMS Servers, each on its own loopback
/// address (127.0.0.11, .12, ...), as in production.
public struct BackendCluster {
    public var backends: [TestBackend]
    public var port: Int

    /// Backends started by hand (on other addresses than 127.0.0.11, ...), sharing `port`.
    public init(backends: [TestBackend], port: Int) {
        self.backends = backends
        self.port = port
    }

    public var nodes: [NodeConfiguration] {
        backends.map { NodeConfiguration(id: $0.name, host: $0.address.ipAddress!) }
    }

    /// Starts one backend per behaviour on 127.0.0.11, .12, ... sharing one free port.
    public static func start(_ behaviors: [TestBackend.Behavior], firstHost: Int = 11) async throws -> BackendCluster {
        var lastError: (any Error)?
        for _ in 0..<5 {
            let port = try FreePort.pick()
            var started: [TestBackend] = []
            do {
                for (index, behavior) in behaviors.enumerated() {
                    started.append(
                        try await TestBackend.start(
                            name: "ums\(index + 1)", host: "127.0.0.\(firstHost + index)", port: port,
                            behavior: behavior))
                }
                return BackendCluster(backends: started, port: port)
            } catch {
                lastError = error
                for backend in started { await backend.stop() }
            }
        }
        throw lastError ?? TestKitError("no free port for the cluster")
    }

    public func stop() async {
        for backend in backends { await backend.stop() }
    }
}

/// A balancer running in-process on loopback, composed as `ums-balancer run` composes it, with
/// its log captured.
public final class RunningBalancer: Sendable {
    public let app: BalancerApp
    public var balancer: Balancer { app.balancer }
    public let logs = LogCapture()
    private let task: Task<Void, any Error>

    /// Starts a balancer for `configuration` and waits until its listeners are open.
    public init(
        configuration: BalancerConfiguration, store: StateStore? = nil, initialRun: UpdateRun? = nil,
        dataPath: DataPath = .automatic, clock: any BalancerClock = SystemClock()
    ) async throws {
        var configuration = configuration
        configuration.threads = configuration.threads ?? 2
        var options = BalancerApp.Options(logger: logs.logger(label: "balancer"))
        options.store = store
        options.initialRun = initialRun
        options.dataPath = dataPath
        options.clock = clock
        app = try await BalancerApp.build(configuration: configuration, options: options)
        task = Task { [app] in try await app.run() }
        do {
            try await app.balancer.listening.get()
        } catch {
            _ = await task.result
            throw error
        }
    }

    /// Starts a balancer with one listener per entry, all on free 127.0.0.1 ports.
    public static func start(
        dataPath: DataPath = .automatic,
        listeners: [(name: String, trafficClass: TrafficClass)] = [("devices", .device)],
        balance: BalanceAlgorithm? = nil,
        cluster: BackendCluster,
        nodes: [NodeConfiguration]? = nil,
        configure: (inout BalancerConfiguration) -> Void = { _ in }
    ) async throws -> RunningBalancer {
        var configuration = BalancerConfiguration(
            listeners: try listeners.map {
                ListenerConfiguration(
                    name: $0.name,
                    bind: Endpoint(host: "127.0.0.1", port: try FreePort.pick()),
                    backendPort: cluster.port,
                    classification: .fixed($0.trafficClass),
                    balance: balance ?? .leastConnections
                )
            },
            nodes: nodes ?? cluster.nodes
        )
        configuration.threads = 2
        configuration.shutdownGrace = .seconds(5)
        configure(&configuration)
        return try await RunningBalancer(configuration: configuration, dataPath: dataPath)
    }

    /// The bound address of a listener.
    public func address(_ listener: String = "devices") throws -> SocketAddress {
        guard let address = balancer.localAddress(ofListener: listener) else {
            throw TestKitError("listener \(listener) is not open")
        }
        return address
    }

    /// Access-log lines so far.
    public var accessLog: [LogCapture.Record] { logs.records("connection") }

    /// Waits until at least `count` access-log lines are written, at most `timeout` (the caller's
    /// expectations then say what is missing).
    public func waitForAccessLog(_ count: Int, timeout: Duration = .seconds(10)) async throws {
        let deadline = ContinuousClock.now + timeout
        while accessLog.count < count, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Access-log lines of single requests (`by-path` listeners) so far.
    public var requestLog: [LogCapture.Record] { logs.records("request") }

    /// Graceful shutdown, then the event loops stop.
    public func stop() async throws {
        await app.shutDown()
        try await task.value
    }
}

extension RunningBalancer {
    /// A balancer in front of a simulated cluster: `devices` and `console` listeners, status probes
    /// every 100 ms, and the reconnect action of the simulated nodes.
    public static func start(
        for cluster: SimulatedCluster,
        consolePolicy: ConsolePolicy = .normalOnly,
        configure: (inout BalancerConfiguration) -> Void = { _ in }
    ) async throws -> RunningBalancer {
        try await RunningBalancer(
            configuration: configuration(for: cluster, consolePolicy: consolePolicy, configure: configure))
    }

    /// The configuration `start(for:)` runs: listeners on free ports, fast probes, the simulated
    /// nodes' status and reconnect URLs.
    public static func configuration(
        for cluster: SimulatedCluster,
        consolePolicy: ConsolePolicy = .normalOnly,
        configure: (inout BalancerConfiguration) -> Void = { _ in }
    ) throws -> BalancerConfiguration {
        var configuration = BalancerConfiguration(
            listeners: [
                ListenerConfiguration(
                    name: "devices", bind: Endpoint(host: "127.0.0.1", port: try FreePort.pick()),
                    backendPort: cluster.devicePort, classification: .fixed(.device)),
                ListenerConfiguration(
                    name: "console", bind: Endpoint(host: "127.0.0.1", port: try FreePort.pick()),
                    backendPort: cluster.consolePort, classification: .fixed(.console)),
            ],
            nodes: cluster.nodes.map { NodeConfiguration(id: $0.configuration.id, host: $0.configuration.host) }
        )
        configuration.threads = 2
        configuration.shutdownGrace = .seconds(5)
        configuration.health.interval = .milliseconds(100)
        // Generous timeouts and a fall of 3, so a loaded machine does not flap the nodes.
        configuration.health.timeout = .seconds(2)
        configuration.health.rise = 1
        configuration.health.fall = 3
        configuration.status = StatusProbeSettings(action: .url(cluster.statusURL))
        var reconnect = ReconnectSettings(action: .url(cluster.reconnectURL))
        reconnect.timeout = .seconds(15)
        configuration.reconnect = reconnect
        configuration.update.console = consolePolicy
        configuration.update.drainTimeout = .seconds(2)
        configuration.update.slowStart = .seconds(1)
        configure(&configuration)
        return configuration
    }

    /// Waits until the balancer's view of `node` satisfies `condition`.
    public func waitUntil(
        _ node: String, _ what: String, timeout: Duration = .seconds(20), _ condition: @Sendable (NodeStatus) -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while !(balancer.directory.status(of: node).map(condition) ?? false) {
            guard ContinuousClock.now < deadline else {
                throw TestKitError(
                    "the balancer never saw \(node) \(what): \(String(describing: balancer.directory.status(of: node)))"
                )
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
