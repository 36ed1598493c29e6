import AsyncHTTPClient
import BalancerCore
import Foundation
import Logging
import NIOCore
import NIOPosix
import UMSNodeSimulator

/// The simulated UMS Servers of the demo, each on its own loopback address with the same ports.
struct DemoCluster: Sendable {
    let nodes: [SimulatedNode]
    let ports: (device: Int, console: Int, control: Int)
    let group: any EventLoopGroup

    static func start(
        count: Int, version: String, dataDirectory: URL, reconnectSeconds: Double, group: any EventLoopGroup,
        logger: Logger
    ) async throws -> DemoCluster {
        var lastError: (any Error)?
        for _ in 0..<5 {
            let ports = (try await freePort(group), try await freePort(group), try await freePort(group))
            var started: [SimulatedNode] = []
            do {
                for index in 0..<count {
                    let node = SimulatedNode(
                        configuration: .init(
                            id: "ums\(index + 1)", host: "127.0.0.\(11 + index)", devicePort: ports.0,
                            consolePort: ports.1, controlPort: ports.2, dataDirectory: dataDirectory,
                            version: NodeVersion(version)!, reconnectSeconds: reconnectSeconds, drainTimeoutSeconds: 3),
                        logger: logger, eventLoopGroup: group)
                    try await node.start()
                    started.append(node)
                }
                return DemoCluster(nodes: started, ports: ports, group: group)
            } catch {
                lastError = error
                for node in started { await node.stop() }
            }
        }
        throw DemoError("cannot start the simulated cluster on 127.0.0.11 and up: \(lastError.map { "\($0)" } ?? "?")")
    }

    /// The balancer's configuration for this cluster, as an operator would write it.
    func balancerConfiguration(_ settings: Demo.Settings) async throws -> BalancerConfiguration {
        var configuration = BalancerConfiguration(
            listeners: [
                ListenerConfiguration(
                    name: "devices", bind: Endpoint(host: "127.0.0.1", port: try await freePort(group)),
                    backendPort: ports.device,
                    classification: .fixed(.device)),
                ListenerConfiguration(
                    name: "console", bind: Endpoint(host: "127.0.0.1", port: try await freePort(group)),
                    backendPort: ports.console, classification: .fixed(.console)),
                // IGEL OS 12 devices' WebSockets live on a server's 8443, the nodes' console port.
                // In production one by-sni or by-path listener tells them from consoles on that port;
                // the demo's servers speak plain HTTP, so their WebSockets get a device listener of their own.
                ListenerConfiguration(
                    name: "websockets", bind: Endpoint(host: "127.0.0.1", port: try await freePort(group)),
                    backendPort: ports.console, classification: .fixed(.device)),
            ],
            nodes: nodes.map { NodeConfiguration(id: $0.configuration.id, host: $0.configuration.host) })
        configuration.threads = 2
        configuration.shutdownGrace = .seconds(3)
        configuration.health.interval = settings.scaled(0.25)
        configuration.health.timeout = .seconds(1)
        configuration.health.rise = 1
        configuration.health.fall = 2
        configuration.status = StatusProbeSettings(action: .url("http://{host}:\(ports.control)/status"))
        var reconnect = ReconnectSettings(action: .url("http://{host}:\(ports.control)/control/reconnect"))
        reconnect.timeout = .seconds(30)
        configuration.reconnect = reconnect
        configuration.update.console = settings.consolePolicy
        configuration.update.drainTimeout = settings.scaled(2)
        configuration.update.slowStart = settings.scaled(3)
        if settings.drive { configureDrive(&configuration, settings) }
        return configuration
    }

    /// Runs the installer on `node`.
    func install(_ node: SimulatedNode, version: String, seconds: Double) async throws {
        var request = HTTPClientRequest(
            url: "http://\(node.configuration.host):\(ports.control)/control/install?version=\(version)&seconds="
                + String(format: "%.2f", seconds))
        request.method = .POST
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        guard response.status.code == 202 else {
            throw DemoError("install on \(node.configuration.id) answered HTTP \(response.status.code)")
        }
    }

    func waitUntil(timeout: Duration, _ condition: @Sendable () -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            guard ContinuousClock.now < deadline else {
                throw DemoError("a server did not come back within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    func stop() async {
        for node in nodes { await node.stop() }
    }
}

/// A port the kernel just said was free.
func freePort(_ group: any EventLoopGroup) async throws -> Int {
    let channel = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
    let port = channel.localAddress?.port ?? 0
    try await channel.close()
    return port
}
