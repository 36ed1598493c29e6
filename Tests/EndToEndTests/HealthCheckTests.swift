import AsyncHTTPClient
import BalancerTesting
import Foundation
import NIOCore
import Testing

/// `GET /healthz` and `ums-balancer health` as keepalived uses them, and the operator commands
/// reading only the config file's `admin` section.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct HealthCheckTests {
    static let token = "health-token-0123456789"

    /// The config: one listener in front of an echo backend, a status command that answers only
    /// once the file `gate` exists (nil: at once), so the test decides when start-up ends.
    func config(listenPort: Int, backendPort: Int, adminPort: Int, gate: String? = nil) -> String {
        let wait = gate.map { "while [ ! -e \($0) ]; do sleep 0.05; done; " } ?? ""
        return """
            listeners:
              - { name: devices, bind: 127.0.0.1:\(listenPort), backend_port: \(backendPort), class: device }
            nodes:
              - { id: ums1, host: 127.0.0.1 }
            health: { interval: 1h, timeout: 60s }
            status:
              command: [/bin/sh, -c, "\(wait)echo '{\\"id\\":\\"{id}\\",\\"mode\\":\\"normal\\"}'"]
            admin: { bind: 127.0.0.1:\(adminPort), token_file: admin.token }
            shutdown_grace: 20s
            threads: 1
            """
    }

    func healthz(_ adminURL: String) async throws -> Int {
        let response = try await HTTPClient.shared.execute(
            HTTPClientRequest(url: adminURL + "/healthz"), timeout: .seconds(5))
        return Int(response.status.code)
    }

    func cli(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        try await ProcessHarness.run("ums-balancer", arguments)
    }

    @Test func healthIsUnavailableWhileStartingAndDrainingAndOKWhileServing() async throws {
        let backend = try await TestBackend.start(name: "ums1", behavior: .echo)
        let folder = try TemporaryDirectory()
        _ = try folder.write("admin.token", Self.token)
        let (listenPort, adminPort) = (try FreePort.pick(), try FreePort.pick())
        let path = try folder.write(
            "b.yaml",
            config(
                listenPort: listenPort, backendPort: backend.port, adminPort: adminPort,
                gate: folder.url.appendingPathComponent("probe-may-answer").path))
        let adminURL = "http://127.0.0.1:\(adminPort)"
        let process = try await ProcessHarness("ums-balancer", ["run", "--config", path])
        defer {
            process.kill()
            folder.remove()
        }

        // Starting: the admin API answers, the first probe round has not finished, nothing listens.
        try await process.waitForOutput("admin API listening")
        #expect(!process.output.contains("listener=devices"))
        #expect(try await healthz(adminURL) == 503)
        let starting = try await cli(["health", "--config", path])
        #expect(starting.status == 1)
        #expect(starting.output.contains("unhealthy: starting or shutting down"), "\(starting.output)")

        _ = try folder.write("probe-may-answer", "")
        try await process.waitForOutput("listener=devices")
        #expect(try await healthz(adminURL) == 200)
        let serving = try await cli(["health", "--config", path])
        #expect(serving.status == 0, "\(serving.output)")
        #expect(serving.output.contains("healthy: serving"))
        // A scheme-less --admin works, and --quiet prints nothing.
        let quiet = try await cli(["health", "--quiet", "--admin", "127.0.0.1:\(adminPort)"])
        #expect(quiet.status == 0 && quiet.output.isEmpty, "\(quiet.output)")
        // /healthz is open; everything else still wants the token.
        let status = try await HTTPClient.shared.execute(
            HTTPClientRequest(url: adminURL + "/status"), timeout: .seconds(5))
        #expect(status.status.code == 401)

        // Draining: a connection keeps the balancer in its grace period; health says so at once.
        let connection = try await TestClient.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: listenPort))
        process.send(SIGTERM)
        try await process.waitForOutput("stopped accepting")
        #expect(process.isRunning)
        #expect(try await healthz(adminURL) == 503)
        #expect(try await cli(["health", "--config", path]).status == 1)
        await TestClient.close(connection)
        #expect(try await process.waitForExit(timeout: .seconds(15)) == 0)

        let down = try await cli(["health", "--config", path])
        #expect(down.status == 1)
        #expect(
            down.output.contains("unhealthy: nothing answers at \(adminURL) (connection refused)"), "\(down.output)")
        await backend.stop()
    }

    @Test func operatorCommandsReadOnlyTheAdminSectionOfABrokenFile() async throws {
        let backend = try await TestBackend.start(name: "ums1", behavior: .echo)
        let folder = try TemporaryDirectory()
        _ = try folder.write("admin.token", Self.token)
        let (listenPort, adminPort) = (try FreePort.pick(), try FreePort.pick())
        let good = config(listenPort: listenPort, backendPort: backend.port, adminPort: adminPort)
        let path = try folder.write("b.yaml", good)
        let process = try await ProcessHarness("ums-balancer", ["run", "--config", path])
        defer {
            process.kill()
            folder.remove()
        }
        try await process.waitForOutput("listener=devices")

        // The edit keepalived's old track script choked on: valid YAML, an unknown key in a listener.
        _ = try folder.write(
            "b.yaml", good.replacingOccurrences(of: "class: device }", with: "class: device, colour: red }"))
        #expect(try await cli(["check-config", "--config", path]).status == 1)
        let status = try await cli(["status", "--config", path])
        #expect(status.status == 0, "\(status.output)")
        #expect(status.output.contains("ums1"))
        #expect(try await cli(["health", "--config", path]).status == 0)
        #expect(try await cli(["node", "drain", "ums1", "--config", path]).status == 0)
        // The reload reaches the balancer, which rejects the file: the command says why and exits 1.
        let reload = try await cli(["reload", "--config", path])
        #expect(reload.status == 1)
        #expect(reload.output.contains("unknown key 'colour' in a listener"), "\(reload.output)")

        // Not even YAML any more outside the admin section: the commands still find the balancer.
        _ = try folder.write("b.yaml", good.replacingOccurrences(of: "nodes:\n", with: "nodes:\n  - [ums1\n"))
        #expect(try await cli(["status", "--config", path]).status == 0)
        #expect(try await cli(["health", "--config", path]).status == 0)

        // A mistake in the admin section itself is reported where it is.
        _ = try folder.write("b.yaml", good.replacingOccurrences(of: "token_file:", with: "tokenfile:"))
        let broken = try await cli(["status", "--config", path])
        #expect(broken.status == 1)
        #expect(broken.output.contains("\(path):8:"), "\(broken.output)")
        #expect(broken.output.contains("unknown key 'tokenfile' in admin"), "\(broken.output)")

        process.send(SIGTERM)
        #expect(try await process.waitForExit(timeout: .seconds(15)) == 0)
        await backend.stop()
    }
}
