import AsyncHTTPClient
import BalancerAdmin
import BalancerTesting
import Foundation
import NIOCore
import Testing

/// `ums-balancer run` as a real process in front of three simulated nodes, and the operator
/// commands (`status`, `node`, `reload`, `update`) run against it as an operator would.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct CLIProcessTests {
    /// A running `ums-balancer` process, its config folder and the cluster behind it.
    struct Running {
        var cluster: SimulatedCluster
        var folder: TemporaryDirectory
        var process: ProcessHarness
        var configPath: String
        var adminURL: String
        var devicesPort: Int
        var webPort: Int

        func cli(_ arguments: [String]) async throws -> (status: Int32, output: String) {
            try await ProcessHarness.run("ums-balancer", arguments)
        }

        func stop() async {
            process.send(SIGTERM)
            _ = try? await process.waitForExit(timeout: .seconds(15))
            process.kill()
            await cluster.stop()
            folder.remove()
        }
    }

    func start() async throws -> Running {
        let cluster = try await SimulatedCluster.start(count: 3)
        let folder = try TemporaryDirectory()
        _ = try folder.write("admin.token", "\(AdminHarness.token)\n")
        let (devicesPort, webPort, adminPort) = (try FreePort.pick(), try FreePort.pick(), try FreePort.pick())
        let configPath = try folder.write(
            "ums-balancer.yaml",
            """
            listeners:
              - { name: devices, bind: 127.0.0.1:\(devicesPort), backend_port: \(cluster.devicePort), class: device }
              - name: web
                bind: 127.0.0.1:\(webPort)
                backend_port: \(cluster.devicePort)
                class: by-sni
                sni: { console: [ums-console.example.com], default: device }
            nodes:
              - { id: ums1, host: 127.0.0.11 }
              - { id: ums2, host: 127.0.0.12 }
              - { id: ums3, host: 127.0.0.13 }
            health: { interval: 100ms, timeout: 500ms, rise: 1, fall: 2 }
            status: { url: "http://{host}:\(cluster.controlPort)/status" }
            state: { path: state/ums-balancer.sqlite }
            admin: { bind: 127.0.0.1:\(adminPort), token_file: admin.token }
            shutdown_grace: 2s
            threads: 1
            """)
        let process = try await ProcessHarness("ums-balancer", ["run", "--config", configPath])
        let running = Running(
            cluster: cluster, folder: folder, process: process, configPath: configPath,
            adminURL: "http://127.0.0.1:\(adminPort)", devicesPort: devicesPort, webPort: webPort)
        do {
            try await process.waitForOutput("admin API listening")
            try await process.waitForOutput("listener=devices")
        } catch {
            await running.stop()
            throw error
        }
        return running
    }

    @Test func statusPrintsTheNodesAndTheUpdateLineAndJSONOnRequest() async throws {
        let running = try await start()
        do {
            try await running.cluster.install("ums1", version: "12.07.100", seconds: 0.3)
            let deadline = ContinuousClock.now + .seconds(20)
            while true {
                let result = try await running.cli(["status", "--config", running.configPath, "--json"])
                #expect(result.status == 0, "\(result.output)")
                let document = try JSONDecoder.admin.decode(StatusDocument.self, from: Data(result.output.utf8))
                if document.update.updated == 1, document.nodes.allSatisfy({ $0.health == "up" }) { break }
                guard ContinuousClock.now < deadline else { throw TestKitError("no progress: \(result.output)") }
                try await Task.sleep(for: .milliseconds(100))
            }

            let table = try await running.cli(["status", "--config", running.configPath])
            #expect(table.status == 0)
            let lines = table.output.split(separator: "\n").map(String.init)
            #expect(
                lines.first?.split(separator: " ") == ["NODE", "MODE", "HEALTH", "ADMIN", "VERSION", "CONNECTIONS"])
            #expect(
                lines.contains { $0.split(separator: " ") == ["ums1", "update", "up", "active", "12.07.100", "0"] })
            #expect(
                lines.contains { $0.split(separator: " ") == ["ums2", "normal", "up", "active", "12.06.100", "0"] })
            #expect(
                lines.contains { $0.split(separator: " ") == ["ums3", "normal", "up", "active", "12.06.100", "0"] })
            #expect(lines.contains("update: in-progress - update 12.07.100: 1 of 3 servers updated"), "\(table.output)")
            #expect(lines.contains { $0.hasPrefix("config: generation 1, last reload ok at ") })

            // The same through --admin and --token-file.
            let tokenFile = running.folder.url.appendingPathComponent("admin.token").path
            let direct = try await running.cli(["status", "--admin", running.adminURL, "--token-file", tokenFile])
            #expect(direct.status == 0 && direct.output.contains("1 of 3 servers updated"))

            // The operator ends the run by hand; status then says how the last run ended.
            let end = try await running.cli(["update", "end", "--config", running.configPath])
            #expect(end.status == 0, "\(end.output)")
            #expect(
                end.output.hasPrefix(
                    "update run ended: idle - no update running; the last run ended ended-by-operator: ended by admin-api 127.0.0.1:"
                ), "\(end.output)")
            let after = try await running.cli(["status", "--config", running.configPath])
            let afterLines = after.output.split(separator: "\n").map(String.init)
            #expect(
                afterLines.contains {
                    $0.hasPrefix("update: idle - no update running; the last run ended ended-by-operator")
                })
            #expect(
                afterLines.contains {
                    $0.hasPrefix("last run: ended-by-operator at ") && $0.contains(" by admin-api 127.0.0.1:")
                        && $0.hasSuffix(
                            "left as it stands: ums1 update 12.07.100, ums2 normal 12.06.100, ums3 normal 12.06.100")
                }, "\(after.output)")
        } catch {
            await running.stop()
            throw error
        }
        await running.stop()
    }

    @Test func nodeReloadAndUpdateCommandsGoThroughTheAPIWithClearErrors() async throws {
        let running = try await start()
        let config = running.configPath
        do {
            let drain = try await running.cli(["node", "drain", "ums2", "--config", config])
            #expect(drain.status == 0)
            #expect(drain.output.hasPrefix("ums2: admin state draining"))
            let status = try await running.cli(["status", "--config", config])
            #expect(status.output.split(separator: "\n").contains { $0.hasPrefix("ums2") && $0.contains(" draining ") })
            #expect(
                try await running.cli(["node", "resume", "ums2", "--config", config]).output.contains(
                    "admin state active"))

            let unknown = try await running.cli(["node", "maintenance", "ums9", "--config", config])
            #expect(unknown.status == 1)
            #expect(unknown.output.contains("unknown node 'ums9' (404)"))

            let reload = try await running.cli(["reload", "--config", config])
            #expect(
                reload.status == 0 && reload.output.contains("configuration reloaded: generation 2"), "\(reload.output)"
            )

            let retry = try await running.cli(["update", "retry-reconnect", "--config", config])
            #expect(retry.status == 1 && retry.output.contains("not stalled"))
            let end = try await running.cli(["update", "end", "--config", config])
            #expect(end.status == 1 && end.output.contains("the update run is idle: there is no run to end (409)"))

            let wrongToken = try running.folder.write("wrong.token", "not-the-token")
            let refused = try await running.cli(["status", "--admin", running.adminURL, "--token-file", wrongToken])
            #expect(refused.status == 1)
            #expect(refused.output.contains("the admin token was refused (401)"))
        } catch {
            await running.stop()
            throw error
        }
        running.process.send(SIGTERM)
        #expect(try await running.process.waitForExit(timeout: .seconds(15)) == 0)
        let down = try await running.cli(["status", "--config", config])
        #expect(down.status == 1)
        #expect(
            down.output.contains("the balancer is not running at \(running.adminURL) (connection refused)"),
            "\(down.output)")
        await running.stop()
    }

    @Test func aReloadPutsARotatedAdminTokenInForce() async throws {
        let running = try await start()
        do {
            func status(with token: String) async throws -> Int {
                var request = HTTPClientRequest(url: running.adminURL + "/status")
                request.headers.add(name: "Authorization", value: "Bearer \(token)")
                return Int(try await HTTPClient.shared.execute(request, timeout: .seconds(10)).status.code)
            }
            let rotated = "rotated-token-9876543210"
            #expect(try await status(with: AdminHarness.token) == 200)
            _ = try running.folder.write("admin.token", rotated + "\n")
            // Until a reload, the token read at start is the one in force.
            #expect(try await status(with: AdminHarness.token) == 200)
            running.process.send(SIGHUP)
            try await running.process.waitForOutput("admin token replaced from its file")
            #expect(try await status(with: AdminHarness.token) == 401)
            #expect(try await status(with: rotated) == 200)

            // An empty file is an error: the token in force stays.
            _ = try running.folder.write("admin.token", "  \n")
            running.process.send(SIGHUP)
            try await running.process.waitForOutput("keeping the token in force")
            #expect(try await status(with: rotated) == 200)
        } catch {
            await running.stop()
            throw error
        }
        await running.stop()
    }

    @Test func metricsOfTheRunningProcessParseAndHoldTheDataPathSeries() async throws {
        let running = try await start()
        do {
            let devices = try SocketAddress(ipAddress: "127.0.0.1", port: running.devicesPort)
            for _ in 0..<3 {
                let answer = try await TestHTTP.request("GET", "/device/00e0c5000001/profile", to: devices)
                #expect(answer.status == 200)
            }
            // Plain HTTP where a TLS ClientHello is expected: closed, and counted as a handshake failure.
            let web = try SocketAddress(ipAddress: "127.0.0.1", port: running.webPort)
            let notTLS = try await TestClient.connect(to: web)
            let refused = try await notTLS.executeThenClose { inbound, outbound in
                try await outbound.write(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: ums\r\n\r\n"))
                return try await TestClient.readAll(inbound)
            }
            #expect(refused.readableBytes == 0)
            var request = HTTPClientRequest(url: running.adminURL + "/metrics")
            request.headers.add(name: "Authorization", value: "Bearer \(AdminHarness.token)")
            // Connection counters are written when a connection ends, just after the answer.
            var metrics = try PrometheusText("")
            let deadline = ContinuousClock.now + .seconds(10)
            repeat {
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
                #expect(response.status.code == 200)
                metrics = try PrometheusText(String(buffer: try await response.body.collect(upTo: 4 * 1024 * 1024)))
                try await Task.sleep(for: .milliseconds(50))
            } while (metrics.samples("ums_balancer_connections_total").isEmpty
                || metrics.samples("ums_balancer_handshake_failures_total").isEmpty) && ContinuousClock.now < deadline

            let served = metrics.samples("ums_balancer_connections_total", ["listener": "devices", "class": "device"])
            #expect(served.map(\.value).reduce(0, +) == 3)
            #expect(metrics.samples("ums_balancer_bytes_total", ["listener": "devices", "direction": "in"]).count == 1)
            #expect(metrics.types["ums_balancer_connections_active"] == "gauge")
            #expect(metrics.types["ums_balancer_probe_duration_seconds"] == "histogram")
            #expect(
                !metrics.samples("ums_balancer_probe_duration_seconds_bucket", ["node": "ums1", "le": "+Inf"]).isEmpty)
            #expect(metrics.samples("ums_balancer_node_mode", ["node": "ums2", "mode": "normal"]).first?.value == 1)
            #expect(metrics.samples("ums_balancer_config_generation").first?.value == 1)
            #expect(
                metrics.samples("ums_balancer_handshake_failures_total", ["listener": "web", "reason": "not-tls"])
                    .first?.value == 1, "\(metrics.samples("ums_balancer_handshake_failures_total"))")
        } catch {
            await running.stop()
            throw error
        }
        await running.stop()
    }

    @Test func commandsSayWhatIsMissingWithoutABalancer() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let path = try folder.write(
            "no-admin.yaml",
            """
            listeners:
              - { name: devices, bind: 127.0.0.1:30001, backend_port: 30001, class: device }
            nodes:
              - { id: ums1, host: 127.0.0.11 }
            """)
        let noAdmin = try await ProcessHarness.run("ums-balancer", ["status", "--config", path])
        #expect(noAdmin.status == 1 && noAdmin.output.contains("has no admin section"), "\(noAdmin.output)")
        let noPid = try await ProcessHarness.run(
            "ums-balancer", ["reload", "--pid-file", folder.url.appendingPathComponent("none.pid").path])
        #expect(noPid.status == 1 && noPid.output.contains("cannot read"), "\(noPid.output)")
        let noToken = try await ProcessHarness.run(
            "ums-balancer", ["node", "drain", "ums1", "--admin", "http://127.0.0.1:9", "--token-file", "/nonexistent"])
        #expect(noToken.status == 1 && noToken.output.contains("cannot read the admin token file /nonexistent"))
    }

    @Test func runRefusesAPublicAdminBindWithoutAToken() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let path = try folder.write(
            "public.yaml",
            """
            listeners:
              - { name: devices, bind: 127.0.0.1:\(try FreePort.pick()), backend_port: 30001, class: device }
            nodes:
              - { id: ums1, host: 127.0.0.11 }
            admin: { bind: 0.0.0.0:\(try FreePort.pick()) }
            """)
        let result = try await ProcessHarness.run("ums-balancer", ["run", "--config", path])
        #expect(result.status == 1)
        #expect(result.output.contains("is not a loopback address: set admin.token_file"))
        #expect(!result.output.contains("listening"))
    }
}
