import BalancerTesting
import Foundation
import NIOCore
import Testing

/// A `by-path` listener streams request and response bodies with backpressure: bodies many times
/// larger than anything the balancer should hold pass through while its memory stays flat.
@Suite(.timeLimit(.minutes(5)))
struct HTTPStreamingMemoryTests {
    @Test func bodiesOfTensOfMebibytesStreamBothWaysWithBoundedMemory() async throws {
        let certificates = try await TestCertificates.generate()
        defer { certificates.directory.remove() }
        let nodes = try await HTTPSTestCluster.start(count: 1, certificates: certificates)
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let port = try FreePort.pick()
        let config = try dir.write(
            "b.yaml",
            """
            listeners:
              - name: web
                bind: 127.0.0.1:\(port)
                backend_port: \(nodes.port)
                class: by-path
                tls: { certificate: \(certificates.path("balancer.pem")), private_key: \(certificates.path("balancer.key")), client_ca: \(certificates.path("ca.pem")) }
                backend_tls: { ca: \(certificates.path("ca.pem")) }
            nodes:
              - { id: ums1, host: \(nodes.nodes[0].address.ipAddress!) }
            threads: 2
            """)
        let balancer = try await ProcessHarness("ums-balancer", ["run", "--config", config])
        defer { balancer.kill() }
        try await balancer.waitForOutput("listener=web")
        let size = 64 << 20
        let upload = dir.url.appendingPathComponent("upload").path
        guard FileManager.default.createFile(atPath: upload, contents: nil),
            let handle = FileHandle(forWritingAtPath: upload)
        else { throw TestKitError("cannot write \(upload)") }
        for _ in 0..<(size >> 20) { handle.write(Data(count: 1 << 20)) }
        try handle.close()
        let tls = [
            "--cacert", certificates.path("ca.pem"), "--cert", certificates.path("device.pem"), "--key",
            certificates.path("device.key"),
        ]
        let url = "https://127.0.0.1:\(port)"
        // Warm up: TLS contexts, the node connection, allocator pools.
        _ = try await Curl.run(tls + ["-o", "/dev/null", "\(url)/bytes/\(1 << 20)"])
        let before = try ResidentMemory.of(balancer.processIdentifier)
        let peak = PeakMemory(of: balancer.processIdentifier)
        // Upload (curl asks for 100-continue), then a Content-Length and a chunked download, on one connection.
        let transfers = try await Curl.run(
            tls + ["-T", upload, "\(url)/upload", "--next"] + tls + [
                "-o", "/dev/null", "\(url)/bytes/\(size)", "--next",
            ]
                + tls + ["-o", "/dev/null", "\(url)/chunked/\(size)"])
        let highest = await peak.stop()
        await nodes.stop()
        #expect(transfers.map(\.status) == [200, 200, 200])
        #expect(transfers.first?.json?["received"] as? Int == size, "\(transfers.first?.body ?? "")")
        #expect(transfers.dropFirst().map(\.downloaded) == [size, size])
        #expect(transfers.map(\.connects) == [1, 0, 0])
        let growth = highest - before
        print("balancer RSS \(before >> 10) KiB before, \(highest >> 10) KiB at most while 3 x 64 MiB passed")
        #expect(growth < 8 << 20, "the balancer's resident memory grew by \(growth >> 10) KiB")
    }
}
