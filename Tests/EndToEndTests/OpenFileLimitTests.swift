import BalancerDataPath
import BalancerTesting
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Testing

/// The balancer at its open-file limit: clients beyond it wait in the listen backlog and are
/// served once connections close; none is accepted and reset, the pause is counted as the
/// balancer's own, and no node is blamed.
@Suite(.timeLimit(.minutes(2)))
struct OpenFileLimitTests {
    /// Which of the connections got their echo so far.
    final class Answers: Sendable {
        private let answered = NIOLockedValueBox<Set<Int>>([])
        private let failed = NIOLockedValueBox<[Int: String]>([:])

        func record(_ index: Int) { _ = answered.withLockedValue { $0.insert(index) } }
        func fail(_ index: Int, _ why: String) { failed.withLockedValue { $0[index] = why } }
        var count: Int { answered.withLockedValue { $0.count } }
        var set: Set<Int> { answered.withLockedValue { $0 } }
        var failures: [Int: String] { failed.withLockedValue { $0 } }

        func waitFor(_ count: Int, within timeout: Duration) async throws {
            let deadline = ContinuousClock.now + timeout
            while self.count < count, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        }
    }

    @Test func clientsBeyondTheLimitWaitInTheBacklogAndAreServedWhenDescriptorsFreeUp() async throws {
        let openFiles = 160
        let capacity = DescriptorBudget.capacity(forLimit: openFiles) / DescriptorBudget.perConnection
        // More than the limit could hold at all: without the budget some would be accepted and reset.
        let clients = capacity + 40
        let backend = try await TestBackend.start(name: "ums1", behavior: .echo)
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let port = try FreePort.pick()
        let adminPort = try FreePort.pick()
        let path = try directory.write(
            "b.yaml",
            """
            listeners:
              - { name: devices, bind: 127.0.0.1:\(port), backend_port: \(backend.port), class: device }
            nodes:
              - { id: ums1, host: 127.0.0.1 }
            health: { interval: 1h }
            admin: { bind: 127.0.0.1:\(adminPort) }
            threads: 1
            """)
        let binary = ProcessHarness.productsDirectory.appendingPathComponent("ums-balancer").path
        // Soft and hard limit both, so the balancer cannot raise it.
        let balancer = try await ProcessHarness(
            path: URL(fileURLWithPath: "/bin/sh"),
            ["-c", #"ulimit -n "$2" && exec "$0" run --config "$1""#, binary, path, "\(openFiles)"])
        defer { balancer.kill() }
        try await balancer.waitForOutput("listener=devices")
        #expect(balancer.output.contains("limit=\(openFiles) max_connections=\(capacity)"))

        let address = try SocketAddress(ipAddress: "127.0.0.1", port: port)
        let answers = Answers()
        var connections: [TestClient.Connection] = []
        var readers: [Task<Void, Never>] = []
        for index in 0..<clients {
            // The kernel completes the handshake of a client in the backlog: connecting succeeds.
            let connection = try await TestClient.connect(to: address)
            connections.append(connection)
            try await connection.outbound.write(ByteBuffer(string: "ping \(index)\n"))
            readers.append(
                Task {
                    do {
                        var iterator = connection.inbound.makeAsyncIterator()
                        if try await TestClient.readLine(&iterator) == "ping \(index)" {
                            answers.record(index)
                        } else {
                            answers.fail(index, "closed without an echo")
                        }
                    } catch {
                        answers.fail(index, "\(error)")
                    }
                })
        }
        try await answers.waitFor(capacity, within: .seconds(20))
        // Give the waiting ones a moment to show they really wait.
        try await Task.sleep(for: .milliseconds(500))
        #expect(answers.count == capacity, "served beyond the budget: \(answers.count) of \(clients)")
        #expect(answers.failures.isEmpty, "\(answers.failures)")
        #expect(balancer.output.contains("open-file limit reached"))
        // Counted as the listener's pause, and as nothing a node did.
        let metrics = try await TestHTTP.request(
            "GET", "/metrics", to: try SocketAddress(ipAddress: "127.0.0.1", port: adminPort)
        ).body
        #expect(sample(metrics, #"ums_balancer_accept_paused_total{listener="devices"}"#) ?? 0 >= 1, "\(metrics)")
        #expect(metrics.contains("# HELP ums_balancer_accept_paused_total "))
        #expect(!metrics.contains("ums_balancer_refusals_total{"), "\(metrics)")
        #expect(!metrics.contains("ums_balancer_node_ejections_total{"), "\(metrics)")
        #expect(sample(metrics, #"ums_balancer_node_health{node="ums1",health="up"}"#) == 1, "\(metrics)")
        let file = try directory.write("metrics.txt", metrics)
        let check = try await ProcessHarness.runProgram(at: "/bin/sh", ["-c", "promtool check metrics < \"$0\"", file])
        #expect(check.status == 0 && check.output.isEmpty, "promtool (Debian prometheus): \(check.output)")

        // Closing served connections frees descriptors: the waiting clients are served, in turn.
        for index in answers.set.sorted() { await TestClient.close(connections[index]) }
        try await answers.waitFor(clients, within: .seconds(20))
        #expect(answers.count == clients)
        #expect(answers.failures.isEmpty, "\(answers.failures)")
        for connection in connections { await TestClient.close(connection) }
        for reader in readers { await reader.value }

        balancer.send(SIGTERM)
        #expect(try await balancer.waitForExit() == 0)
        let log = balancer.output
        #expect(!log.contains("every node failed"), "a healthy node was blamed for the balancer's own limit")
        #expect(!log.contains("outcome=error"), "\(log)")
        #expect(!log.contains("outcome=unavailable"))
        #expect(!log.contains("passive health"), "the node was taken out of rotation for the balancer's limit")
        await backend.stop()
    }

    /// The value of the sample `series` (name and labels as written) in Prometheus text, if present.
    func sample(_ metrics: String, _ series: String) -> Double? {
        metrics.split(separator: "\n").lazy
            .filter { $0.hasPrefix(series + " ") }
            .compactMap { Double($0.dropFirst(series.count + 1).split(separator: " ")[0]) }
            .first
    }
}
