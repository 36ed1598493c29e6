import BalancerCore
import BalancerNIO
import BalancerTesting
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Backends standing in for the same port on several UMS Servers, each on its own loopback
/// address (127.0.0.11, .12, ...), as in production.
struct BackendCluster {
    var backends: [TestBackend]
    var port: Int

    var nodes: [NodeConfiguration] {
        backends.map { NodeConfiguration(id: $0.name, host: $0.address.ipAddress!) }
    }

    static func start(_ behaviors: [TestBackend.Behavior], firstHost: Int = 11) async throws -> BackendCluster {
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

    func stop() async {
        for backend in backends { await backend.stop() }
    }
}

/// A balancer running in-process on loopback, with its log captured.
final class RunningBalancer: Sendable {
    let balancer: Balancer
    let logs = LogCapture()
    private let group: MultiThreadedEventLoopGroup
    private let services: ServiceGroup
    private let task: Task<Void, any Error>

    init(configuration: BalancerConfiguration) async throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.threads ?? 2)
        balancer = Balancer(configuration: configuration, group: group, logger: logs.logger(label: "balancer"))
        services = ServiceGroup(
            services: [balancer], logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        task = Task { [services] in try await services.run() }
        try await balancer.listening.get()
    }

    /// Starts a balancer with one listener per entry, all on free 127.0.0.1 ports.
    static func start(
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
        return try await RunningBalancer(configuration: configuration)
    }

    func address(_ listener: String = "devices") throws -> SocketAddress {
        guard let address = balancer.localAddress(ofListener: listener) else {
            throw TestKitError("listener \(listener) is not open")
        }
        return address
    }

    /// Access-log lines so far.
    var accessLog: [LogCapture.Record] { logs.records("connection") }

    /// Graceful shutdown, then the event loops stop.
    func stop() async throws {
        await services.triggerGracefulShutdown()
        try await task.value
        try await group.shutdownGracefully()
    }
}
