import BalancerCore
import BalancerNIO
import BalancerTesting
import Testing

/// Status read by an operator command (as a query of the UMS table `epr_processes` would be).
@Suite(.timeLimit(.minutes(1)))
struct CommandProbeTests {
    @Test func aCommandPrintingTheStatusSetsTheModeAndAHungOneTimesOutAloneWithoutStallingOthers() async throws {
        let cluster = try await BackendCluster.start([.greetThenEcho, .greetThenEcho, .greetThenEcho])
        // ums1's command hangs; ums2 reports update mode; ums3 normal.
        let script = """
            case "{id}" in
              ums1) sleep 30 ;;
              ums2) echo '{"id":"ums2","mode":"update","version":"12.07.100"}' ;;
              *) echo '{"id":"{id}","mode":"normal","version":"12.06.100"}' ;;
            esac
            """
        let balancer = try await RunningBalancer.start(cluster: cluster) {
            $0.status = StatusProbeSettings(action: .command(["/bin/sh", "-c", script]), timeout: .milliseconds(500))
            $0.health.interval = .milliseconds(200)
            $0.health.fall = 1
        }
        try await balancer.waitUntil("ums2", "in update mode") { $0.mode == .update && $0.version == "12.07.100" }
        try await balancer.waitUntil("ums3", "normal") { $0.mode == .normal && $0.health == .up }
        try await balancer.waitUntil("ums1", "down after its command timed out") { $0.health == .down }
        // Devices reach the nodes whose commands answer; the hung one takes nothing.
        let address = try balancer.address()
        for _ in 0..<6 {
            let connection = try await TestClient.connect(to: address)
            let greeting = try await connection.executeThenClose { inbound, outbound in
                var iterator = inbound.makeAsyncIterator()
                defer { outbound.finish() }
                return try await TestClient.readLine(&iterator)
            }
            #expect(greeting == "ums2" || greeting == "ums3")
        }
        try await balancer.stop()
        await cluster.stop()
    }

    @Test func aStatusCommandInheritsNoSocketOfTheBalancer() async throws {
        let cluster = try await BackendCluster.start([.greetThenEcho])
        // A command holding a copy of a client's socket would keep that connection open after the
        // balancer closed it, and one holding a listener would keep its port bound.
        let script = """
            for fd in /proc/$$/fd/*; do
              case "$(readlink "$fd")" in socket:*) echo "inherited $fd" >&2; exit 1 ;; esac
            done
            echo '{"id":"{id}","mode":"update","version":"12.07.100"}'
            """
        let balancer = try await RunningBalancer.start(cluster: cluster) {
            $0.status = StatusProbeSettings(action: .command(["/bin/sh", "-c", script]), timeout: .seconds(2))
            $0.health.interval = .milliseconds(100)
            $0.health.fall = 1
        }
        let connection = try await TestClient.connect(to: try balancer.address())
        try await balancer.waitUntil("ums1", "in update mode, its command having found no socket") {
            $0.mode == .update && $0.health == .up
        }
        try await connection.executeThenClose { _, outbound in outbound.finish() }
        try await balancer.stop()
        await cluster.stop()
    }
}
