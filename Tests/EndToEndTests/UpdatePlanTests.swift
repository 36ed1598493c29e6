import BalancerTesting
import Foundation
import NIOCore
import Testing

/// `ums-balancer update plan` against a running balancer and real node processes: ready on a
/// healthy cluster, not ready (exit 1, the failing line says what to do) on an orphan or a clock
/// more than a minute off.
@Suite(.timeLimit(.minutes(2)))
struct UpdatePlanCommandTests {
    func withBalancer(
        _ cluster: NodeProcessCluster, _ body: (_ admin: String, _ balancer: ProcessHarness) async throws -> Void
    ) async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let adminPort = try FreePort.pick()
        let path = try dir.write(
            "b.yaml",
            """
            listeners:
              - { name: devices, bind: 127.0.0.1:\(try FreePort.pick()), backend_port: \(cluster.devicePort), class: device }
            nodes:
            \(cluster.ids.map { "  - { id: \($0), host: \(cluster.host($0)), max_connections: 500 }" }.joined(separator: "\n"))
            health: { interval: 100ms, timeout: 1s, rise: 1, fall: 1 }
            status: { url: "\(cluster.statusURL)" }
            reconnect: { url: "\(cluster.reconnectURL)" }
            admin: { bind: 127.0.0.1:\(adminPort) }
            shutdown_grace: 1s
            threads: 1
            """)
        let balancer = try await ProcessHarness("ums-balancer", ["run", "--config", path])
        defer { balancer.kill() }
        try await balancer.waitForOutput("listener=devices")
        try await body("127.0.0.1:\(adminPort)", balancer)
        balancer.send(SIGTERM)
        _ = try await balancer.waitForExit()
    }

    @Test func aHealthyClusterIsReadyAndAnOrphanIsNot() async throws {
        let cluster = try await NodeProcessCluster.start(count: 3)
        defer { Task { await cluster.stop() } }
        try await withBalancer(cluster) { admin, _ in
            let ready = try await ProcessHarness.run("ums-balancer", ["update", "plan", "--admin", admin])
            #expect(ready.status == 0, "\(ready.output)")
            #expect(ready.output.contains("ready: ums1 -> ums2 -> ums3"), "\(ready.output)")
            #expect(ready.output.contains("pass  clocks"), "\(ready.output)")
            #expect(ready.output.contains("with ums1 (the busiest) out, the others take 1000"), "\(ready.output)")

            try await cluster.kill("ums3")
            var orphan = ready
            let deadline = ContinuousClock.now + .seconds(10)
            repeat {
                try await Task.sleep(for: .milliseconds(200))
                orphan = try await ProcessHarness.run("ums-balancer", ["update", "plan", "--admin", admin])
            } while orphan.status == 0 && ContinuousClock.now < deadline
            #expect(orphan.status == 1, "\(orphan.output)")
            #expect(
                orphan.output.contains("fail  servers running  ums3 configured but not answering"), "\(orphan.output)")
            #expect(orphan.output.contains("not ready"), "\(orphan.output)")
        }
    }

    @Test func aClockMoreThanAMinuteOffFailsThePlan() async throws {
        let cluster = try await NodeProcessCluster.start(count: 2, extraArguments: ["ums2": ["--clock-offset=-90"]])
        defer { Task { await cluster.stop() } }
        try await withBalancer(cluster) { admin, _ in
            let plan = try await ProcessHarness.run("ums-balancer", ["update", "plan", "--admin", admin])
            #expect(plan.status == 1, "\(plan.output)")
            #expect(plan.output.contains("fail  clocks"), "\(plan.output)")
            // The Date header has whole seconds: -90 or -91.
            #expect(
                plan.output.contains("ums2 -90 s off the balancer's clock")
                    || plan.output.contains("ums2 -91 s off the balancer's clock"), "\(plan.output)")
        }
    }
}
