import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// A simulated UMS cluster of `ums-node-sim` processes on 127.0.0.11, .12, ... sharing one data
/// folder: nodes that can be killed with SIGKILL and started again with the same arguments, as a
/// watchdog restarts a crashed server.
public final class NodeProcessCluster: Sendable {
    public let ids: [String]
    public let devicePort: Int
    public let consolePort: Int
    public let controlPort: Int
    public let dataDirectory: TemporaryDirectory
    private let hosts: [String]
    /// The network namespace the nodes run in, or nil for the test's own.
    private let namespace: String?
    private let arguments: @Sendable (String) -> [String]
    private let processes: NIOLockedValueBox<[String: ProcessHarness]>

    private init(
        ids: [String], ports: (Int, Int, Int), hosts: [String], namespace: String?, dataDirectory: TemporaryDirectory,
        arguments: @escaping @Sendable (String) -> [String]
    ) {
        self.ids = ids
        (devicePort, consolePort, controlPort) = ports
        self.hosts = hosts
        self.namespace = namespace
        self.dataDirectory = dataDirectory
        self.arguments = arguments
        processes = NIOLockedValueBox([:])
    }

    /// Starts `count` node processes on `version`, on 127.0.0.`firstHost`, .`firstHost+1`, ... or,
    /// given `hosts`, on those addresses in network namespace `namespace`; `extraArguments` go to one node's
    /// `ums-node-sim` (e.g. `--clock-offset`).
    public static func start(
        count: Int = 3, version: String = "12.06.100", reconnectSeconds: Double = 0.5, firstHost: Int = 11,
        hosts: [String]? = nil, namespace: String? = nil, extraArguments: [String: [String]] = [:]
    ) async throws -> NodeProcessCluster {
        let dataDirectory = try TemporaryDirectory()
        let ports = (try FreePort.pick(), try FreePort.pick(), try FreePort.pick())
        let ids = (1...count).map { "ums\($0)" }
        let addresses = hosts ?? (0..<count).map { "127.0.0.\(firstHost + $0)" }
        let cluster = NodeProcessCluster(
            ids: ids, ports: ports, hosts: addresses, namespace: namespace, dataDirectory: dataDirectory
        ) { id in
            let index = Int(id.dropFirst(3))! - 1
            return [
                "--id", id, "--host", addresses[index], "--device-port", "\(ports.0)",
                "--console-port", "\(ports.1)", "--control-port", "\(ports.2)", "--data-dir", dataDirectory.url.path,
                "--version", version, "--reconnect-seconds", "\(reconnectSeconds)", "--log-level", "notice",
            ] + extraArguments[id, default: []]
        }
        do {
            for id in ids { try await cluster.launch(id) }
        } catch {
            await cluster.stop()
            throw error
        }
        return cluster
    }

    /// The address node `id` listens on.
    public func host(_ id: String) -> String {
        hosts[ids.firstIndex(of: id)!]
    }

    /// The status URL template for the balancer's `status.url`.
    public var statusURL: String { "http://{host}:\(controlPort)/status" }

    /// The reconnect URL template for the balancer's `reconnect.url`.
    public var reconnectURL: String { "http://{host}:\(controlPort)/control/reconnect" }

    /// `nodes:` lines for a balancer configuration.
    public var nodesYAML: String {
        ids.map { "  - { id: \($0), host: \(host($0)) }" }.joined(separator: "\n")
    }

    /// Kills node `id` with SIGKILL and waits until it is gone.
    public func kill(_ id: String) async throws {
        guard let process = processes.withLockedValue({ $0.removeValue(forKey: id) }) else { return }
        process.send(SIGKILL)
        try await process.waitForExit()
    }

    /// Starts node `id` again with the arguments it was first started with.
    public func restart(_ id: String) async throws {
        try await launch(id)
    }

    /// Node `id`'s status JSON, read over its control port.
    public func status(_ id: String) async throws -> [String: Any] {
        let answer = try await TestHTTP.request(
            "GET", "/status", to: try SocketAddress(ipAddress: host(id), port: controlPort))
        guard answer.status == 200, let json = answer.json else {
            throw TestKitError("status of \(id): HTTP \(answer.status) \(answer.body)")
        }
        return json
    }

    /// Asks `id` to install `version`, as the admin running the installer would.
    public func install(_ id: String, version: String, seconds: Double) async throws {
        let address = try SocketAddress(ipAddress: host(id), port: controlPort)
        let answer = try await TestHTTP.request(
            "POST", "/control/install?version=\(version)&seconds=\(seconds)", to: address)
        guard answer.status == 202 else { throw TestKitError("install on \(id): HTTP \(answer.status) \(answer.body)") }
    }

    /// Waits until node `id` reports `mode` (and `version`, when given); throws after `timeout`.
    public func waitFor(
        _ id: String, mode: String, version: String? = nil, timeout: Duration = .seconds(20)
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        var last: [String: Any] = [:]
        while ContinuousClock.now < deadline {
            if let status = try? await status(id) {
                last = status
                if status["mode"] as? String == mode, version == nil || status["version"] as? String == version {
                    return
                }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestKitError("\(id) never reported \(mode) \(version ?? ""): last \(last)")
    }

    /// Stops every node process (SIGTERM, then SIGKILL) and removes the data folder.
    public func stop() async {
        let running = processes.withLockedValue { processes in
            defer { processes.removeAll() }
            return Array(processes.values)
        }
        for process in running { process.send(SIGTERM) }
        for process in running { _ = try? await process.waitForExit(timeout: .seconds(10)) }
        dataDirectory.remove()
    }

    private func launch(_ id: String) async throws {
        let process =
            if let namespace {
                try await ProcessHarness(
                    path: URL(fileURLWithPath: "/usr/sbin/ip"),
                    TestNetwork.inNamespace(
                        namespace, ProcessHarness.productsDirectory.appendingPathComponent("ums-node-sim").path,
                        arguments(id)))
            } else {
                try await ProcessHarness("ums-node-sim", arguments(id))
            }
        do {
            try await process.waitForOutput("ums-node-sim \(id) listening")
        } catch {
            process.kill()
            throw error
        }
        processes.withLockedValue { $0[id] = process }
    }
}
