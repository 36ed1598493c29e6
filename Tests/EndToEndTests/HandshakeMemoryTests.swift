import BalancerTesting
import Foundation
import NIOCore
import Testing

/// Clients that die in the TLS handshake of a `by-path` listener (no client certificate where one
/// is required; a scanner; a device with a wrong clock) must leave nothing behind: the balancer's
/// resident memory used to grow by ~23 KB per such connection, for good.
@Suite(.timeLimit(.minutes(5)))
struct HandshakeMemoryTests {
    @Test func failedHandshakesLeaveNoMemoryBehind() async throws {
        let certificates = try await TestCertificates.generate()
        let cluster = try await SimulatedCluster.start(tls: certificates)
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
                class: by-path
                tls: { certificate: \(certificates.path("balancer.pem")), private_key: \(certificates.path("balancer.key")), client_ca: \(certificates.path("ca.pem")) }
                backend_tls: { verify: none }
            nodes:
            \(cluster.nodes.map { "  - { id: \($0.configuration.id), host: \($0.configuration.host) }" }.joined(separator: "\n"))
            health: { interval: 1s }
            status: { url: "\(cluster.statusURL)" }
            threads: 2
            """)
        let balancer = try await ProcessHarness("ums-balancer", ["run", "--config", config])
        defer { balancer.kill() }
        try await balancer.waitForOutput("listener=web")
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: port)
        let noCertificate = try TLSTestHTTP.context(certificates, clientCertificate: false)

        func failHandshakes(_ count: Int) async throws {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for lane in 0..<8 {
                    group.addTask {
                        // Four ways to die in the handshake, in turn: no client certificate where
                        // one is required, a connect and close, plain HTTP on the TLS port, and
                        // a ClientHello cut short.
                        for index in stride(from: lane, to: count, by: 8) {
                            switch index % 4 {
                            case 0:
                                _ = try? await TLSTestHTTP.request(
                                    "GET", "/device-connector/x", to: address, context: noCertificate)
                            case 1:
                                if let connection = try? await TestClient.connect(to: address) {
                                    await TestClient.close(connection)
                                }
                            case 2:
                                if let connection = try? await TestClient.connect(to: address) {
                                    _ = try? await connection.executeThenClose { inbound, outbound in
                                        try await outbound.write(ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n"))
                                        outbound.finish()
                                        return try await TestClient.readAll(inbound)
                                    }
                                }
                            default:
                                if let connection = try? await TestClient.connect(to: address) {
                                    _ = try? await connection.executeThenClose { inbound, outbound in
                                        try await outbound.write(
                                            ByteBuffer(bytes: [
                                                0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
                                            ]))
                                        outbound.finish()
                                        return try await TestClient.readAll(inbound)
                                    }
                                }
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        try await failHandshakes(1_000)  // warm-up: allocator pools, caches, thread stacks
        let before = try ResidentMemory.of(balancer.processIdentifier)
        let started = ContinuousClock.now
        try await failHandshakes(10_000)
        try await Task.sleep(for: .seconds(1))
        let after = try ResidentMemory.of(balancer.processIdentifier)
        let perConnection = Double(after - before) / 10_000
        print(
            "RSS before \(before / 1024) KiB, after 10,000 failed handshakes \(after / 1024) KiB: \(Int(perConnection)) B per connection, \(ContinuousClock.now - started)"
        )
        #expect(perConnection < 1_000, "RSS \(before / 1024) KiB -> \(after / 1024) KiB after 10,000 failed handshakes")
        let lines = balancer.output.split(separator: "\n").filter { $0.contains("listener=web") }
        let failed = lines.filter { $0.contains("outcome=handshake-failed") }.count
        // A connect and close sent nothing: that is a TCP check, not a failed handshake.
        let silent = lines.filter { $0.contains("outcome=closed") && $0.contains("bytes_in=0") }.count
        #expect(
            failed >= 7_500 && silent >= 2_500 && failed + silent >= 10_000,
            "each one has its line in the access log: \(failed) handshake failures, \(silent) silent clients")
        await cluster.stop()
    }
}
