import BalancerStore
import BalancerTesting
import Foundation
import NIOCore
import Testing

/// The balancer's state database becomes unwritable while devices are being served (as a full or
/// failing disk makes it): the process used to die of SIGBUS inside SQLite and drop every device.
@Suite(.timeLimit(.minutes(2)))
struct StateStoreFaultTests {
    @Test func anUnwritableStateDatabaseCostsNoDeviceRequestAndIsShownUntilItRecovers() async throws {
        let cluster = try await SimulatedCluster.start()
        let dir = try TemporaryDirectory()
        let statePath = dir.url.appendingPathComponent("state.sqlite").path
        let devicesPort = try FreePort.pick()
        let adminPort = try FreePort.pick()
        let config = try dir.write(
            "b.yaml",
            """
            listeners:
              - { name: devices, bind: 127.0.0.1:\(devicesPort), backend_port: \(cluster.devicePort), class: device }
            nodes:
            \(cluster.nodes.map { "  - { id: \($0.configuration.id), host: \($0.configuration.host) }" }.joined(separator: "\n"))
            health: { interval: 100ms, timeout: 2s, rise: 1, fall: 3 }
            status: { url: "\(cluster.statusURL)" }
            state: { path: \(statePath) }
            admin: { bind: 127.0.0.1:\(adminPort) }
            shutdown_grace: 2s
            threads: 2
            """)
        let admin = try SocketAddress(ipAddress: "127.0.0.1", port: adminPort)
        let balancer = try await ProcessHarness("ums-balancer", ["run", "--config", config])
        defer { balancer.kill() }
        try await balancer.waitForOutput("listener=devices")
        let load = DeviceLoad.start(address: try SocketAddress(ipAddress: "127.0.0.1", port: devicesPort))
        try await Task.sleep(for: .milliseconds(300))

        let files = try await StateFiles.makeImmutable(statePath)
        defer { StateFiles.release(files, dir) }
        // Operator actions are journaled: each is a write the store now refuses.
        for action in ["drain", "resume", "drain", "resume"] {
            let answer = try await TestHTTP.request("POST", "/nodes/ums2/\(action)", to: admin)
            #expect(answer.status == 200, "\(answer.body)")
        }
        let failing = try await waitForState(admin, "the state database failing") { $0["ok"] as? Bool == false }
        #expect((failing["error"] as? String)?.isEmpty == false)
        #expect(failing["since"] is String)
        #expect((failing["unwritten_events"] as? Int ?? 0) >= 4, "\(failing)")
        try await Task.sleep(for: .seconds(1))
        let metrics = try await TestHTTP.request("GET", "/metrics", to: admin).body
        #expect(metrics.contains("ums_balancer_state_ok 0"), "\(metrics)")
        #expect(metrics.contains("ums_balancer_state_write_failures_total"))

        try await StateFiles.makeMutable(files)
        _ = try await waitForState(admin, "the store recovered and wrote the queue") {
            $0["ok"] as? Bool == true && $0["unwritten_events"] as? Int == 0
        }
        let summary = await load.stop()
        balancer.send(SIGTERM)
        #expect(try await balancer.waitForExit() == 0)

        #expect(summary.failures.isEmpty, "\(summary.failures.prefix(3))")
        #expect(summary.served > 5, "the devices kept asking")
        let failureLines = balancer.output.split(separator: "\n").filter {
            $0.contains("state database cannot be written")
        }
        #expect(failureLines.count == 1, "said once, not once per write: \(failureLines)")
        #expect(balancer.output.contains("state database takes writes again"))
        let admins = try await StateStore(path: statePath).events(limit: 1000).filter { $0.kind == .admin }
        #expect(admins.count == 4, "the events queued while the disk refused them were written: \(admins)")
        await cluster.stop()
    }

    func waitForState(
        _ admin: SocketAddress, _ what: String, _ condition: ([String: Any]) -> Bool
    ) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            let status = try await TestHTTP.request("GET", "/status", to: admin)
            if let state = status.json?["state"] as? [String: Any], condition(state) { return state }
            guard ContinuousClock.now < deadline else { throw TestKitError("never \(what): \(status.body)") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}
