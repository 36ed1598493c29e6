import BalancerTesting
import Foundation
import NIOCore
import Testing

/// Consoles that send no TLS server name (connected by IP address) or one no rule lists, through
/// a `by-sni` listener configured as the README shows it, without a `default`: none reaches a
/// node in update mode, where UMS would discard what the admin changes.
@Suite(.timeLimit(.minutes(2)))
struct ConsoleSafetyTests {
    @Test func consolesWithoutAListedServerNameNeverReachAnUpdateModeNodeByDefault() async throws {
        let certificates = try await TestCertificates.generate()
        defer { certificates.directory.remove() }
        let cluster = try await SimulatedCluster.start(count: 2, tls: certificates)
        try await cluster.install("ums2", version: "12.07.100", seconds: 0.3)
        try await cluster.waitUntil("ums2 in update mode") { $0[1].mode == .update }
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let port = try FreePort.pick()
        let config = try dir.write(
            "b.yaml",
            """
            listeners:
              - name: web
                bind: 127.0.0.1:\(port)
                backend_port: \(cluster.consolePort)
                class: by-sni
                sni: { device: [igel-devices.example.com] }
            nodes:
            \(cluster.nodes.map { "  - { id: \($0.configuration.id), host: \($0.configuration.host) }" }.joined(separator: "\n"))
            health: { interval: 100ms, timeout: 2s }
            status: { url: "\(cluster.statusURL)" }
            threads: 1
            """)
        let check = try await ProcessHarness.run("ums-balancer", ["check-config", "--config", config])
        #expect(check.status == 0 && !check.output.contains("warning"), "\(check.output)")
        let balancer = try await ProcessHarness("ums-balancer", ["run", "--config", config])
        defer { balancer.kill() }
        // Listeners open after the first probes: ums2's update mode is known by then.
        try await balancer.waitForOutput("listener=web")
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: port)

        for serverName in [nil, "ums-console.example.com", "unlisted.example.org"] as [String?] {
            for _ in 0..<4 {
                // A fresh context each time, as separate console sessions (no TLS session resumption).
                let context = try TLSTestHTTP.context(certificates, clientCertificate: false, verifyServer: false)
                let login = try await TLSTestHTTP.request(
                    "POST", "/console/login", to: address, context: context, serverName: serverName,
                    headers: [("Connection", "close")], body: "{}")
                #expect(login.status == 200, "\(serverName ?? "no name"): \(login.body)")
            }
        }
        #expect(cluster.node("ums2").consoleLoginsInUpdateMode == 0)
        balancer.send(SIGTERM)
        #expect(try await balancer.waitForExit() == 0)
        let consoles = balancer.output.split(separator: "\n").filter {
            $0.contains("listener=web") && $0.contains("outcome=")
        }
        #expect(consoles.count == 12)
        #expect(consoles.allSatisfy { $0.contains("class=console") && $0.contains("node=ums1") }, "\(consoles)")
        await cluster.stop()
    }

    @Test func checkConfigWarnsAboutAnExplicitDeviceDefaultAndStillExitsZero() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let config = try dir.write(
            "b.yaml",
            """
            listeners:
              - { name: web, bind: 127.0.0.1:8443, backend_port: 8443, class: by-sni, sni: { default: device } }
            nodes: [{ id: ums1, host: 127.0.0.11 }]
            update: { console: allow }
            """)
        let check = try await ProcessHarness.run("ums-balancer", ["check-config", "--config", config])
        #expect(check.status == 0, "\(check.output)")
        let warnings = check.output.split(separator: "\n").filter {
            $0.hasPrefix("\(config):") && $0.contains(": warning: ")
        }
        #expect(warnings.count == 2, "\(check.output)")
        #expect(warnings.first?.hasPrefix("\(config):2:") == true)
        #expect(check.output.contains("OK (1 listeners, 1 nodes, 2 warnings)"))
    }
}
