import BalancerDataPath
import BalancerTesting
import Foundation
import NIOCore
import Testing

/// The `ums-balancer` executable as an operator runs it.
@Suite(.timeLimit(.minutes(2)))
struct BalancerProcessTests {
    func config(listenPort: Int, backendPort: Int, grace: String = "10s") -> String {
        """
        listeners:
          - { name: devices, bind: 127.0.0.1:\(listenPort), backend_port: \(backendPort), class: device }
        nodes:
          - { id: ums1, host: 127.0.0.1 }
        health: { interval: 1h }
        shutdown_grace: \(grace)
        threads: 1
        """
    }

    @Test func checkConfigAcceptsAValidFile() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = try dir.write("ok.yaml", config(listenPort: 30001, backendPort: 30001))
        let result = try await ProcessHarness.run("ums-balancer", ["check-config", "--config", path])
        #expect(result.status == 0)
        #expect(result.output.contains("OK"))
    }

    @Test func checkConfigPrintsOneLinePerProblemAndExitsOne() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = try dir.write(
            "bad.yaml",
            """
            listeners:
              - { name: d, bind: 127.0.0.1:99999, backend_port: 30001, class: device }
            nodes:
              - { id: ums1, host: 127.0.0.1, port: 3 }
            """)
        let result = try await ProcessHarness.run("ums-balancer", ["check-config", "--config", path])
        #expect(result.status == 1)
        #expect(
            result.output.split(separator: "\n").map(String.init) == [
                "\(path):2:22: bind '127.0.0.1:99999': port 99999 is out of range 1-65535",
                "\(path):4:34: unknown key 'port' in a node (expected one of: host, id, install, max_connections)",
            ])
    }

    /// A `ums-balancer` process in front of one echo backend.
    struct Running {
        let backend: TestBackend
        let directory: TemporaryDirectory
        let process: ProcessHarness
        let port: Int

        var address: SocketAddress {
            get throws { try SocketAddress(ipAddress: "127.0.0.1", port: port) }
        }

        /// Kills the process if it still runs and removes its files (the backend is stopped apart).
        func cleanUp() {
            process.kill()
            directory.remove()
        }
    }

    /// Starts the balancer with `config(...)` and waits until it listens.
    func startBalancer(grace: String = "10s") async throws -> Running {
        let backend = try await TestBackend.start(name: "ums1", behavior: .echo)
        let directory = try TemporaryDirectory()
        let port = try FreePort.pick()
        let path = try directory.write("b.yaml", config(listenPort: port, backendPort: backend.port, grace: grace))
        let process = try await ProcessHarness("ums-balancer", ["run", "--config", path])
        let running = Running(backend: backend, directory: directory, process: process, port: port)
        do {
            try await process.waitForOutput("listening")
        } catch {
            running.cleanUp()
            await backend.stop()
            throw error
        }
        return running
    }

    @Test func runRefusesAnInvalidConfigWithTheSameMessages() async throws {
        let result = try await ProcessHarness.run("ums-balancer", ["run", "--config", "/nonexistent.yaml"])
        #expect(result.status == 1)
        #expect(result.output.contains("/nonexistent.yaml:1:1: no such file"))
    }

    @Test func sigtermLetsOpenConnectionsFinishThenExitsZero() async throws {
        let running = try await startBalancer()
        defer { running.cleanUp() }
        let (backend, balancer) = (running.backend, running.process)

        let address = try running.address
        let connections = try await withThrowingTaskGroup(of: TestClient.Connection.self) { tasks in
            for _ in 0..<3 { tasks.addTask { try await TestClient.connect(to: address) } }
            return try await tasks.reduce(into: []) { $0.append($1) }
        }
        for connection in connections { try await connection.channel.writeAndFlush(ByteBuffer(string: "before ")) }

        balancer.send(SIGTERM)
        try await balancer.waitForOutput("stopped accepting")
        #expect(balancer.isRunning)
        await #expect(throws: (any Error).self) { _ = try await TestClient.connect(to: address) }

        // Open connections keep working after the signal, and the balancer exits once they are done.
        for connection in connections {
            try await connection.executeThenClose { inbound, outbound in
                try await outbound.write(ByteBuffer(string: "after"))
                outbound.finish()
                #expect(String(buffer: try await TestClient.readAll(inbound)) == "before after")
            }
        }
        #expect(try await balancer.waitForExit(timeout: .seconds(10)) == 0)
        #expect(balancer.output.contains("shut down"))
        await backend.stop()
    }

    @Test func aSIGHUPAsSoonAsItListensReloadsInsteadOfEndingTheProcess() async throws {
        let running = try await startBalancer()
        defer { running.cleanUp() }
        let (backend, balancer) = (running.backend, running.process)
        // A deployment tool that reloads the moment the balancer is up.
        balancer.send(SIGHUP)
        try await balancer.waitForOutput("configuration reloaded")
        #expect(balancer.isRunning)
        balancer.send(SIGTERM)
        #expect(try await balancer.waitForExit() == 0)
        await backend.stop()
    }

    @Test func theSoftOpenFileLimitIsRaisedToTheHardOneAtStart() async throws {
        // Each proxied connection holds two descriptors; a shell's default soft limit (often 1,024)
        // would cap the balancer at ~500 devices.
        var limit = rlimit()
        #expect(getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0)
        try #require(limit.rlim_max > 512, "the hard limit here leaves nothing to raise")
        let backend = try await TestBackend.start(name: "ums1", behavior: .echo)
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write(
            "b.yaml", config(listenPort: try FreePort.pick(), backendPort: backend.port))
        let binary = ProcessHarness.productsDirectory.appendingPathComponent("ums-balancer").path
        let balancer = try await ProcessHarness(
            path: URL(fileURLWithPath: "/bin/sh"),
            ["-c", #"ulimit -Sn 512 && exec "$0" run --config "$1""#, binary, path])
        defer { balancer.kill() }
        try await balancer.waitForOutput("listening")
        let connections = DescriptorBudget.capacity(forLimit: Int(limit.rlim_max)) / DescriptorBudget.perConnection
        #expect(balancer.output.contains("limit=\(limit.rlim_max) max_connections=\(connections)"))
        let limits = try String(contentsOfFile: "/proc/\(balancer.processIdentifier)/limits", encoding: .utf8)
        let openFiles = try #require(limits.split(separator: "\n").first { $0.hasPrefix("Max open files") })
        #expect(openFiles.split(separator: " ").dropFirst(3).prefix(2) == ["\(limit.rlim_max)", "\(limit.rlim_max)"])
        balancer.send(SIGTERM)
        #expect(try await balancer.waitForExit() == 0)
        await backend.stop()
    }

    @Test func aSecondSignalExitsAtOnceWithoutWaitingForTheGracePeriod() async throws {
        let running = try await startBalancer(grace: "60s")
        defer { running.cleanUp() }
        let (backend, balancer) = (running.backend, running.process)
        let connection = try await TestClient.connect(to: try running.address)
        balancer.send(SIGTERM)
        try await balancer.waitForOutput("stopped accepting")
        let started = ContinuousClock.now
        balancer.send(SIGINT)
        _ = try await balancer.waitForExit(timeout: .seconds(10))
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(balancer.output.contains("second signal"))
        await TestClient.close(connection)
        await backend.stop()
    }

    @Test func connectionsStillOpenAtTheGraceDeadlineAreClosedAndTheExitIsZero() async throws {
        let running = try await startBalancer(grace: "500ms")
        defer { running.cleanUp() }
        let (backend, balancer) = (running.backend, running.process)
        let connection = try await TestClient.connect(to: try running.address)
        let started = ContinuousClock.now
        balancer.send(SIGTERM)
        let received = try await connection.executeThenClose { inbound, _ in try await TestClient.readAll(inbound) }
        #expect(received.readableBytes == 0)
        #expect(try await balancer.waitForExit(timeout: .seconds(10)) == 0)
        #expect(ContinuousClock.now - started >= .milliseconds(400))
        #expect(balancer.output.contains("outcome=shutdown"))
        await backend.stop()
    }
}
