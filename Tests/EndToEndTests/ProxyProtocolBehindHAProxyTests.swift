import BalancerTesting
import Foundation
import NIOCore
import Testing

/// The balancer behind a real HAProxy (Debian's) that sends PROXY protocol v2, as in a cloud or a
/// two-tier installation: the balancer sees the real client, not the front balancer.
@Suite(.timeLimit(.minutes(2)))
struct ProxyProtocolBehindHAProxyTests {
    @Test func theAccessLogNamesTheClientsBehindHAProxy() async throws {
        let haproxy = "/usr/sbin/haproxy"
        try #require(
            FileManager.default.isExecutableFile(atPath: haproxy),
            "haproxy is not installed (.ci/run installs Debian's haproxy package)")
        let backend = try await TestBackend.start(name: "ums1", behavior: .echo)
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let balancerPort = try FreePort.pick()
        let frontPort = try FreePort.pick()
        let config = try directory.write(
            "b.yaml",
            """
            listeners:
              - name: devices
                bind: 127.0.0.1:\(balancerPort)
                backend_port: \(backend.port)
                class: device
                proxy_protocol: { from: [127.0.0.1/32] }
            nodes:
              - { id: ums1, host: 127.0.0.1 }
            health: { interval: 1h }
            threads: 1
            """)
        let front = try directory.write(
            "haproxy.cfg",
            """
            global
                maxconn 100
            defaults
                mode tcp
                timeout connect 2s
                timeout client 10s
                timeout server 10s
            frontend devices
                bind 127.0.0.1:\(frontPort)
                default_backend balancers
            backend balancers
                server ums-balancer 127.0.0.1:\(balancerPort) send-proxy-v2

            """)
        let balancer = try await ProcessHarness("ums-balancer", ["run", "--config", config])
        defer { balancer.kill() }
        try await balancer.waitForOutput("listening")
        // Standard input on /dev/null, so that haproxy's first socket is never descriptor 0.
        // (haproxy wants a newline after the configuration's last line.)
        let proxy = try await ProcessHarness(
            path: URL(fileURLWithPath: "/bin/sh"), ["-c", #"exec "$0" -db -f "$1" < /dev/null"#, haproxy, front])
        defer { proxy.kill() }
        do {
            try await waitUntilListening(port: frontPort)
        } catch {
            throw TestKitError("\(error); haproxy said: \(proxy.output)")
        }

        var sources: [String: Int] = [:]
        for source in ["127.0.0.21", "127.0.0.22", "127.0.0.23"] {
            let connection = try await TestClient.connect(
                to: try SocketAddress(ipAddress: "127.0.0.1", port: frontPort),
                from: try SocketAddress(ipAddress: source, port: 0))
            sources[source] = connection.channel.localAddress?.port
            let echoed = try await connection.executeThenClose { inbound, outbound in
                try await outbound.write(ByteBuffer(string: "from \(source)"))
                outbound.finish()
                return String(buffer: try await TestClient.readAll(inbound))
            }
            #expect(echoed == "from \(source)", "the header reached the node, or the bytes did not")
        }
        balancer.send(SIGTERM)
        #expect(try await balancer.waitForExit() == 0)
        let lines = balancer.output.split(separator: "\n").filter { $0.contains("outcome=") }
        for (source, port) in sources {
            let port = try #require(port)
            #expect(
                lines.contains { $0.contains("client=\(source):\(port)") && $0.contains("via=127.0.0.1:") },
                "no access-log line names \(source):\(port): \(lines)")
        }
        await backend.stop()
    }

    /// Waits until something accepts on 127.0.0.1:`port`.
    func waitUntilListening(port: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if let connection = try? await TestClient.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: port))
            {
                await TestClient.close(connection)
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestKitError("nothing listens on 127.0.0.1:\(port)")
    }
}
