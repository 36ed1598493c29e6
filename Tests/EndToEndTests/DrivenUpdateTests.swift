import BalancerStore
import BalancerTesting
import Foundation
import NIOCore
import Testing

/// `ums-balancer update start`: the balancer drives a rolling update of four `ums-node-sim`
/// processes under device load, is killed (`kill -9`) in the middle and carries on after its
/// restart, and never calls a node's install twice.
@Suite(.timeLimit(.minutes(4)))
struct DrivenUpdateTests {
    static let target = "12.07.100"

    func config(
        _ cluster: NodeProcessCluster, devicesPort: Int, webSocketPort: Int, adminPort: Int, statePath: String
    ) -> String {
        """
        listeners:
          - { name: devices, bind: 127.0.0.1:\(devicesPort), backend_port: \(cluster.devicePort), class: device }
          - { name: websockets, bind: 127.0.0.1:\(webSocketPort), backend_port: \(cluster.consolePort), class: device }
        nodes:
        \(cluster.nodesYAML)
        health: { interval: 100ms, timeout: 1s, rise: 1, fall: 2 }
        status: { url: "\(cluster.statusURL)" }
        reconnect: { url: "\(cluster.reconnectURL)", timeout: 30s, retries: 3, max_unavailable: 1 }
        install: { url: "http://{host}:\(cluster.controlPort)/control/install?version={version}&seconds=1" }
        update: { drain_timeout: 1s, slow_start: 1s, install_timeout: 60s, canary_connections: 20, canary_timeout: 60s }
        state: { path: \(statePath) }
        admin: { bind: 127.0.0.1:\(adminPort) }
        shutdown_grace: 1s
        threads: 2
        """
    }

    @Test func aDrivenUpdateOfFourNodesUnderLoadCarriesOnAfterAKilledBalancerWithoutASecondInstall() async throws {
        let cluster = try await NodeProcessCluster.start(count: 4, reconnectSeconds: 1)
        defer { Task { await cluster.stop() } }
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let statePath = dir.url.appendingPathComponent("state.sqlite").path
        let devicesPort = try FreePort.pick()
        let webSocketPort = try FreePort.pick()
        let adminPort = try FreePort.pick()
        let admin = "127.0.0.1:\(adminPort)"
        let path = try dir.write(
            "b.yaml",
            config(
                cluster, devicesPort: devicesPort, webSocketPort: webSocketPort, adminPort: adminPort,
                statePath: statePath))
        let devices = try SocketAddress(ipAddress: "127.0.0.1", port: devicesPort)

        let first = try await ProcessHarness("ums-balancer", ["run", "--config", path])
        defer { first.kill() }
        try await first.waitForOutput("listener=devices")
        let watch = NodeWatch.start(cluster)
        let load = DeviceLoad.start(address: devices, devices: 3)
        let webSockets = WebSocketDeviceLoad.start(devices: 4, pause: .milliseconds(50)) { _ in
            try await TestWebSocket.connect(
                to: SocketAddress(ipAddress: "127.0.0.1", port: webSocketPort), timeout: .seconds(3))
        }

        let early = try await ProcessHarness.run("ums-balancer", ["update", "pause", "--admin", admin])
        #expect(early.status == 1)
        #expect(
            early.output.contains(
                "error: no driven update: start one with ums-balancer update start --version V (409)"),
            "\(early.output)")
        let start = try await ProcessHarness.run(
            "ums-balancer", ["update", "start", "--version", Self.target, "--admin", admin])
        #expect(start.status == 0, "\(start.output)")
        #expect(start.output.contains("drive: running to 12.07.100"), "\(start.output)")
        #expect(start.output.contains("now   ums1"), "\(start.output)")

        // In the middle: ums2's installer has been called (and ums1 passed its canary gate).
        try await waitUntil("ums2's install was requested", timeout: .seconds(60)) {
            watch.seen.installRequests["ums2"] == 1
        }
        let beforeKill = await load.stop()
        first.send(SIGKILL)
        _ = try await first.waitForExit()

        let second = try await ProcessHarness("ums-balancer", ["run", "--config", path])
        defer { second.kill() }
        try await second.waitForOutput("listener=devices")
        #expect(second.output.contains("driven update resumed from the state database"), "\(second.output)")
        let afterRestart = DeviceLoad.start(address: devices, devices: 3)
        do {
            try await waitUntil("the driven update completed", timeout: .seconds(120)) {
                let status = try? await TestHTTP.request(
                    "GET", "/status", to: SocketAddress(ipAddress: "127.0.0.1", port: adminPort))
                let drive = (status?.json?["update"] as? [String: Any])?["drive"] as? [String: Any]
                return drive?["state"] as? String == "completed"
            }
        } catch {
            // Where it stood, so a failure says why.
            let status = try? await ProcessHarness.run("ums-balancer", ["status", "--admin", admin])
            Issue.record("\(error)\n\(status?.output ?? "no status")\n\(second.output.suffix(4000))")
            throw error
        }
        let status = try await ProcessHarness.run("ums-balancer", ["status", "--admin", admin])
        #expect(status.output.contains("last drive: completed to 12.07.100"), "\(status.output)")
        let afterSummary = await afterRestart.stop()
        let webSocketSummary = await webSockets.stop()
        let seen = await watch.stop()
        second.send(SIGTERM)
        #expect(try await second.waitForExit() == 0)

        // Devices: nothing failed, and the returning nodes served them (the canary gate).
        #expect(beforeKill.failures.isEmpty, "\(beforeKill.failures.prefix(3))")
        #expect(afterSummary.failures.isEmpty, "\(afterSummary.failures.prefix(3))")
        // WebSocket devices: every message echoed in the end (resent after a node went down for its
        // install or reconnect, or the balancer was killed), and they moved as the nodes did.
        #expect(webSocketSummary.lost == 0, "\(webSocketSummary.sent) sent, \(webSocketSummary.echoed) echoed")
        #expect(webSocketSummary.wrongAnswers.isEmpty, "\(webSocketSummary.wrongAnswers.prefix(3))")
        #expect(webSocketSummary.reconnects >= 4, "\(webSocketSummary.connections)")
        #expect(webSocketSummary.connections.contains { $0.end == .closeFrame(1001) }, "a node going down says so")
        #expect(Set((beforeKill.answers + afterSummary.answers).map(\.node)) == Set(cluster.ids))
        // The nodes' own view: one install call each across the restart, one node out at a time.
        #expect(seen.installRequests == ["ums1": 1, "ums2": 1, "ums3": 1, "ums4": 1], "\(seen)")
        #expect(seen.mostOutCount == 1, "never more than one node out at once: \(seen.mostOut), \(seen.rounds) rounds")
        // Each node went its way once, in order (a loaded machine may sample past a short mode).
        for node in ["ums1", "ums2", "ums3"] {
            let modes = seen.modes[node] ?? []
            #expect(
                Self.follows(modes, ["normal", "installing", "update", "reconnecting", "normal"])
                    && modes.contains("update")
                    && modes.last == "normal", "\(seen.modes)")
        }
        #expect(Self.follows(seen.modes["ums4"] ?? [], ["normal", "installing", "normal"]), "\(seen.modes)")
        for node in cluster.ids {
            let final = try await cluster.status(node)
            #expect(final["mode"] as? String == "normal" && final["version"] as? String == Self.target)
        }

        // The journal shows each step, and the resumption.
        let events = try await StateStore(path: statePath).events(limit: 1000).filter { $0.kind == .drive }
        let lines = events.map { "\($0.node ?? "-"): \($0.message)" }
        for node in cluster.ids {
            let requested = lines.filter { $0.hasPrefix("\(node): install of 12.07.100 requested") }
            #expect(requested.count == 1, "\(node): \(lines)")
            #expect(lines.contains { $0.hasPrefix("\(node): back in") }, "\(node): \(lines)")
            #expect(lines.contains { $0.hasPrefix("\(node): step done in") }, "\(node): \(lines)")
        }
        #expect(lines.contains { $0.contains("canary gate: 20 device connections") })
        #expect(lines.contains { $0.hasPrefix("-: started by admin-api") })
        #expect(lines.contains { $0.hasPrefix("-: resumed after a balancer restart") })
        #expect(lines.contains { $0.hasPrefix("-: every server installed") })
        #expect(lines.last?.hasPrefix("-: running -> completed") == true, "\(lines.suffix(3))")
    }

    /// `seen` is `path` with some steps left out: nothing else, nothing twice, in that order.
    static func follows(_ seen: [String], _ path: [String]) -> Bool {
        var rest = path[...]
        for mode in seen {
            guard let index = rest.firstIndex(of: mode) else { return false }
            rest = rest[(index + 1)...]
        }
        return !seen.isEmpty
    }

    func waitUntil(_ what: String, timeout: Duration, _ condition: @Sendable () async -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while await !condition() {
            guard ContinuousClock.now < deadline else { throw TestKitError("never \(what) within \(timeout)") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}
