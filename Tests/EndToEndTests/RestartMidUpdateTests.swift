import BalancerCore
import BalancerStore
import BalancerTesting
import Foundation
import NIOCore
import Testing

/// The balancer killed (kill -9) in the middle of a rolling update and started again.
@Suite(.timeLimit(.minutes(3)))
struct RestartMidUpdateTests {
    func config(_ cluster: SimulatedCluster, devicesPort: Int, statePath: String) -> String {
        """
        listeners:
          - { name: devices, bind: 127.0.0.1:\(devicesPort), backend_port: \(cluster.devicePort), class: device }
        nodes:
        \(cluster.nodes.map { "  - { id: \($0.configuration.id), host: \($0.configuration.host) }" }.joined(separator: "\n"))
        health: { interval: 100ms, timeout: 2s, rise: 1, fall: 3 }
        status: { url: "\(cluster.statusURL)" }
        reconnect: { url: "\(cluster.reconnectURL)", timeout: 30s, retries: 3 }
        update: { drain_timeout: 1s, slow_start: 1s }
        state: { path: \(statePath) }
        shutdown_grace: 2s
        threads: 2
        """
    }

    @Test func aBalancerKilledMidUpdateResumesTheRunAndNeverCallsAReconnectTwice() async throws {
        let cluster = try await SimulatedCluster.start(reconnectSeconds: 1.5)
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let statePath = dir.url.appendingPathComponent("state.sqlite").path
        let devicesPort = try FreePort.pick()
        let path = try dir.write("b.yaml", config(cluster, devicesPort: devicesPort, statePath: statePath))
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: devicesPort)

        let first = try await ProcessHarness("ums-balancer", ["run", "--config", path])
        defer { first.kill() }
        try await first.waitForOutput("listening")
        let load = DeviceLoad.start(address: address)
        for node in ["ums1", "ums2"] {
            try await cluster.install(node, version: "12.07.100", seconds: 0.3)
            try await cluster.waitUntil("\(node) in update mode") {
                $0.first { $0.configuration.id == node }!.mode == .update
            }
        }
        try await cluster.install("ums3", version: "12.07.100", seconds: 0.3)
        // The running balancer holds the state database exclusively: its log tells the progress.
        try await first.waitForOutput("calling reconnect", timeout: .seconds(30))
        let beforeKill = await load.stop()
        first.send(SIGKILL)
        _ = try await first.waitForExit()

        let second = try await ProcessHarness("ums-balancer", ["run", "--config", path])
        defer { second.kill() }
        try await second.waitForOutput("listening")
        #expect(second.output.contains("update run resumed from the state database"))
        let afterRestart = DeviceLoad.start(address: address)
        try await cluster.waitUntil("every node normal on 12.07.100", timeout: .seconds(40)) { nodes in
            nodes.allSatisfy { $0.mode == .normal && $0.version.text == "12.07.100" }
        }
        try await second.waitForOutput("update run completed", timeout: .seconds(30))
        try await Task.sleep(for: .milliseconds(300))
        let afterSummary = await afterRestart.stop()
        second.send(SIGTERM)
        #expect(try await second.waitForExit() == 0)

        let events = try await StateStore(path: statePath).events(limit: 1000)
        let calls = events.filter { $0.kind == .reconnect && $0.message.hasPrefix("reconnect call") }.compactMap(\.node)
        #expect(
            calls.sorted() == ["ums1", "ums2"], "each update-mode node is called once, across the restart: \(calls)")
        #expect(events.contains { $0.kind == .run && $0.message.hasPrefix("resumed after a balancer restart") })
        #expect(beforeKill.failures.isEmpty, "\(beforeKill.failures.prefix(3))")
        #expect(afterSummary.failures.isEmpty, "\(afterSummary.failures.prefix(3))")
        #expect(beforeKill.served + afterSummary.served > 20)
        #expect(cluster.nodes.map(\.consoleLoginsInUpdateMode) == [0, 0, 0])
        await cluster.stop()
    }
}
