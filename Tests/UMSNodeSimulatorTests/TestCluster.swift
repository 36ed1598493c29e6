import Foundation
import Logging
import Testing
import UMSNodeSimulator

/// Three in-process nodes on 127.0.0.11-13 sharing one temporary data directory.
struct TestCluster {
    static let oldVersion = "12.06.100"
    static let newVersion = "12.07.100"

    let directory: URL
    let nodes: [SimulatedNode]

    /// Runs `body` with a started cluster, then stops it and removes its data.
    static func with(
        count: Int = 3, reconnectSeconds: Double = 0.5, drainTimeoutSeconds: Double = 5,
        _ body: (TestCluster) async throws -> Void
    ) async throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("ums-node-sim-tests-\(UUID().uuidString)")
        var logger = Logger(label: "ums-node-sim-tests")
        logger.logLevel = .error
        let nodes = (1...count).map { index in
            SimulatedNode(
                configuration: .init(
                    id: "ums\(index)", host: "127.0.0.1\(index)", dataDirectory: directory,
                    version: NodeVersion(oldVersion)!, reconnectSeconds: reconnectSeconds, defaultInstallSeconds: 0.5,
                    drainTimeoutSeconds: drainTimeoutSeconds),
                logger: logger)
        }
        let cluster = TestCluster(directory: directory, nodes: nodes)
        defer { try? FileManager.default.removeItem(at: directory) }
        do {
            for node in nodes { try await node.start() }
            try await body(cluster)
        } catch {
            for node in nodes { await node.stop() }
            throw error
        }
        for node in nodes { await node.stop() }
    }

    func host(_ index: Int) -> String { nodes[index].configuration.host }

    /// Sends a request to node `index`'s control port.
    func control(_ index: Int, _ method: String, _ path: String) async throws -> TestResponse {
        try await TestHTTP.request(method, host: host(index), port: nodes[index].ports.control, path)
    }

    func device(_ index: Int, _ path: String) async throws -> TestResponse {
        try await TestHTTP.request("GET", host: host(index), port: nodes[index].ports.device, path)
    }

    func console(_ index: Int, _ method: String, _ path: String, headers: [String: String] = [:]) async throws
        -> TestResponse
    {
        try await TestHTTP.request(method, host: host(index), port: nodes[index].ports.console, path, headers: headers)
    }

    /// The status JSON of node `index`, read over its control port.
    func status(_ index: Int) async throws -> [String: Any] {
        let response = try await control(index, "GET", "/status")
        #expect(response.status == 200)
        return try response.json()
    }

    /// Polls node `index`'s status until its mode is `mode` (at most 15 s).
    func waitForMode(_ index: Int, _ mode: String) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + .seconds(15)
        while true {
            let status = try await status(index)
            if status["mode"] as? String == mode || ContinuousClock.now > deadline { return status }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Whether both the device and console ports of node `index` refuse connections, within 2 s
    /// (a node closes its ports just after it answered the request that took them down).
    func servicePortsRefuse(_ index: Int) async -> Bool {
        let ports = nodes[index].ports
        let deadline = ContinuousClock.now + .seconds(2)
        while true {
            let device = await TestHTTP.isRefused(host: host(index), port: ports.device)
            let console = await TestHTTP.isRefused(host: host(index), port: ports.console)
            if device && console { return true }
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    func localCopyExists(_ index: Int) -> Bool {
        FileManager.default.fileExists(atPath: nodes[index].localCopyPath)
    }
}
