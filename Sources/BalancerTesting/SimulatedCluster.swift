import Foundation
import Logging
import NIOCore
import UMSNodeSimulator

/// A UMS HA cluster of simulated nodes on 127.0.0.11, .12, ... with the same three ports each and
/// one shared data folder, as `ums-node-sim` processes would run it.
public final class SimulatedCluster: Sendable {
    public let nodes: [SimulatedNode]
    public let devicePort: Int
    public let consolePort: Int
    public let controlPort: Int
    public let dataDirectory: TemporaryDirectory

    private init(nodes: [SimulatedNode], ports: (Int, Int, Int), dataDirectory: TemporaryDirectory) {
        self.nodes = nodes
        (devicePort, consolePort, controlPort) = ports
        self.dataDirectory = dataDirectory
    }

    /// Starts `count` nodes on `version`.
    public static func start(
        count: Int = 3,
        version: String = "12.06.100",
        reconnectSeconds: Double = 0.3,
        firstHost: Int = 11,
        tls: TestCertificates? = nil
    ) async throws -> SimulatedCluster {
        var lastError: (any Error)?
        for _ in 0..<5 {
            let dataDirectory = try TemporaryDirectory()
            let ports = (try FreePort.pick(), try FreePort.pick(), try FreePort.pick())
            var started: [SimulatedNode] = []
            do {
                for index in 0..<count {
                    var configuration = SimulatedNode.Configuration(
                        id: "ums\(index + 1)", host: "127.0.0.\(firstHost + index)", devicePort: ports.0,
                        consolePort: ports.1, controlPort: ports.2, dataDirectory: dataDirectory.url,
                        version: NodeVersion(version)!, reconnectSeconds: reconnectSeconds, drainTimeoutSeconds: 2)
                    // In TLS mode the device and console ports speak TLS with node.pem, as real servers' 8443 does.
                    configuration.tlsCertificate = tls?.path("node.pem")
                    configuration.tlsKey = tls?.path("node.key")
                    let node = SimulatedNode(
                        configuration: configuration,
                        logger: Logger(label: "sim", factory: { _ in SwiftLogNoOpLogHandler() }))
                    try await node.start()
                    started.append(node)
                }
                return SimulatedCluster(nodes: started, ports: ports, dataDirectory: dataDirectory)
            } catch {
                lastError = error
                for node in started { await node.stop() }
                dataDirectory.remove()
            }
        }
        throw lastError ?? TestKitError("cannot start a simulated cluster")
    }

    /// The node with `id`.
    public func node(_ id: String) -> SimulatedNode {
        nodes.first { $0.configuration.id == id }!
    }

    /// The status URL template for the balancer's `status.url`.
    public var statusURL: String { "http://{host}:\(controlPort)/status" }

    /// The reconnect URL template for the balancer's `reconnect.url`.
    public var reconnectURL: String { "http://{host}:\(controlPort)/control/reconnect" }

    /// Asks `id` to install `version`, as the admin running the installer would.
    public func install(_ id: String, version: String, seconds: Double) async throws {
        let address = try SocketAddress(ipAddress: node(id).configuration.host, port: controlPort)
        let answer = try await TestHTTP.request(
            "POST", "/control/install?version=\(version)&seconds=\(seconds)", to: address)
        guard answer.status == 202 else { throw TestKitError("install on \(id): HTTP \(answer.status) \(answer.body)") }
    }

    /// Waits until `condition` holds for the nodes, polling; throws after `timeout`.
    public func waitUntil(
        _ what: String, timeout: Duration = .seconds(20), _ condition: @Sendable ([SimulatedNode]) -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition(nodes) {
            guard ContinuousClock.now < deadline else {
                throw TestKitError(
                    "timed out waiting for \(what): \(nodes.map { "\($0.configuration.id) \($0.mode) \($0.version)" })")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    public func stop() async {
        for node in nodes { await node.stop() }
        dataDirectory.remove()
    }
}
