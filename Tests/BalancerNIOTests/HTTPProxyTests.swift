import BalancerCore
import BalancerNIO
import BalancerTesting
import Foundation
import NIOCore
import Testing

/// A `by-path` listener as a reverse proxy, driven by curl: requests kept alive on both sides,
/// each one classified and routed by its own path, node connections reused, bodies streamed.
@Suite(.timeLimit(.minutes(2)))
struct HTTPProxyTests {
    struct Setup {
        var certificates: TestCertificates
        var nodes: HTTPSTestCluster
        var balancer: RunningBalancer
        var port: Int

        /// curl's options to trust the balancer and present the device certificate.
        var tls: [String] {
            [
                "--cacert", certificates.path("ca.pem"), "--cert", certificates.path("device.pem"), "--key",
                certificates.path("device.key"),
            ]
        }

        func url(_ path: String) -> String { "https://127.0.0.1:\(port)\(path)" }

        func stop() async throws {
            try await balancer.stop()
            await nodes.stop()
            certificates.directory.remove()
        }
    }

    static let device = "/device-connector/device/00E0C5000001/profile"
    static let console = "/console/login"

    static func start(
        nodes count: Int = 3, threads: Int = 2, http: HTTPSettings = HTTPSettings(),
        configure: (inout BalancerConfiguration) -> Void = { _ in }
    ) async throws -> Setup {
        let certificates = try await TestCertificates.generate()
        let nodes = try await HTTPSTestCluster.start(count: count, certificates: certificates)
        let port = try FreePort.pick()
        var listener = PathListenerTests.pathListener(certificates, port: port, backendPort: nodes.port)
        if case .byPath(var settings) = listener.classification {
            settings.http = http
            listener.classification = .byPath(settings)
        }
        var configuration = BalancerConfiguration(
            listeners: [listener],
            nodes: nodes.nodes.map { NodeConfiguration(id: $0.name, host: $0.address.ipAddress!) })
        configuration.threads = threads
        configuration.shutdownGrace = .seconds(2)
        configure(&configuration)
        let balancer = try await RunningBalancer(configuration: configuration)
        for node in nodes.nodes {
            try await balancer.waitUntil(node.name, "up") { $0.health == .up }
        }
        return Setup(certificates: certificates, nodes: nodes, balancer: balancer, port: port)
    }

    @Test func severalRequestsOnOneConnectionAreEachRoutedByTheirPath() async throws {
        let setup = try await Self.start()
        for node in ["ums1", "ums2"] {
            #expect(await setup.balancer.balancer.overrideMode(.update, of: node, actor: "test"))
        }
        let paths = [Self.device, Self.console, Self.device, Self.console, Self.device, Self.device, Self.console]
        let transfers = try await Curl.run(
            setup.tls + [
                "--http1.1", "-H", "X-SSL-CERT: forged", "-H", "X-Forwarded-For: 6.6.6.6", "-H",
                "X-Forwarded-Proto: http",
            ] + paths.map(setup.url))
        try await setup.stop()

        #expect(transfers.map(\.status) == Array(repeating: 200, count: paths.count))
        #expect(transfers.map(\.httpVersion) == Array(repeating: "1.1", count: paths.count))
        #expect(transfers.map(\.connects) == [1] + Array(repeating: 0, count: paths.count - 1), "one client connection")
        var deviceNodes: Set<String> = []
        for (path, transfer) in zip(paths, transfers) {
            let node = transfer.json?["node"] as? String ?? "?"
            if path == Self.console {
                #expect(node == "ums3", "a console request never reaches a node in update mode")
            } else {
                deviceNodes.insert(node)
            }
            // Every request carries the real client certificate; the forged fields are gone.
            let certificate = transfer.json?["x_ssl_cert"] as? String ?? ""
            #expect(certificate.hasPrefix("-----BEGIN%20CERTIFICATE-----%0A"), "\(transfer.body)")
            #expect(transfer.json?["x_forwarded_for"] as? String == "127.0.0.1")
            #expect(transfer.json?["x_forwarded_proto"] as? String == "https")
        }
        #expect(
            !deviceNodes.isDisjoint(with: ["ums1", "ums2"]), "device requests reach update-mode nodes: \(deviceNodes)")

        let requests = setup.balancer.requestLog
        #expect(requests.count == paths.count)
        #expect(requests.filter { $0.metadata["class"] == "console" }.allSatisfy { $0.metadata["node"] == "ums3" })
        let connections = setup.balancer.accessLog.filter { $0.metadata["listener"] == "web" }
        #expect(connections.count == 1)
        #expect(connections.first?.metadata["requests"] == "\(paths.count)")
    }

    @Test func nodeConnectionsAreReusedAcrossRequestsAndClients() async throws {
        let setup = try await Self.start(nodes: 1, threads: 1)
        // HTTP/1.1 and HTTP/2 clients alike.
        for version in ["--http1.1", "--http2", "--http1.1"] {
            let transfers = try await Curl.run(
                setup.tls + [version] + Array(repeating: setup.url(Self.device), count: 4))
            #expect(transfers.allSatisfy { $0.status == 200 })
        }
        let node = setup.nodes.node("ums1")
        #expect(node.seen.count == 12)
        #expect(node.connectionsUsed == 1, "12 requests from 3 clients over one node connection")
        try await setup.stop()
    }

    @Test func aRefusedRequestIsAnswered503AndTheConnectionStaysUsable() async throws {
        let setup = try await Self.start()
        for node in ["ums1", "ums2", "ums3"] {
            #expect(await setup.balancer.balancer.overrideMode(.update, of: node, actor: "test"))
        }
        let transfers = try await Curl.run(setup.tls + ["--http1.1", setup.url(Self.console), setup.url(Self.device)])
        try await setup.stop()
        #expect(transfers.map(\.status) == [503, 200])
        #expect(transfers.map(\.connects) == [1, 0])
        #expect(transfers.first?.body.hasPrefix("all servers in update mode: console logins are paused") == true)
        let refused = setup.balancer.requestLog.first { $0.metadata["outcome"] == "refused" }
        #expect(refused?.metadata["status"] == "503")
        #expect(refused?.metadata["class"] == "console")
    }

    @Test func http2StreamsAreRoutedEachByItsPath() async throws {
        let setup = try await Self.start()
        for node in ["ums1", "ums2"] {
            #expect(await setup.balancer.balancer.overrideMode(.update, of: node, actor: "test"))
        }
        let paths = [Self.device, Self.console, Self.device, Self.console, Self.device, Self.device]
        let transfers = try await Curl.run(
            setup.tls + ["--http2", "-H", "X-SSL-CERT: forged"] + paths.map(setup.url) + ["--next"] + setup.tls
                + ["--http2", "-d", "{\"user\":\"admin\"}", setup.url("/upload")])
        try await setup.stop()
        #expect(transfers.map(\.httpVersion) == Array(repeating: "2", count: paths.count + 1))
        #expect(transfers.map(\.status) == Array(repeating: 200, count: paths.count + 1))
        #expect(transfers.map(\.connects) == [1] + Array(repeating: 0, count: paths.count), "one client connection")
        var deviceNodes: Set<String> = []
        for (path, transfer) in zip(paths, transfers) {
            let node = transfer.json?["node"] as? String ?? "?"
            if path == Self.console { #expect(node == "ums3") } else { deviceNodes.insert(node) }
            #expect((transfer.json?["x_ssl_cert"] as? String)?.hasPrefix("-----BEGIN%20CERTIFICATE") == true)
        }
        #expect(!deviceNodes.isDisjoint(with: ["ums1", "ums2"]), "\(deviceNodes)")
        #expect(transfers.last?.json?["received"] as? Int == 16, "a body over HTTP/2 reaches the node whole")
        let streams = setup.balancer.requestLog.compactMap { $0.metadata["stream"] }
        #expect(streams.count == paths.count + 1)
    }

    @Test(arguments: ["--http1.1", "--http2"])
    func aNodeThatAnswersBeforeTheUploadEndsIsHeardAndTheRestOfTheBodyDropped(_ version: String) async throws {
        // A UMS Server refusing an upload (too large, a session expired) answers on the head. The
        // client still sends its body: the balancer reads and drops it, so the client reads the
        // answer and its connection carries the next request. 512 KiB is eight HTTP/2 stream windows.
        let setup = try await Self.start(nodes: 1)
        let upload = setup.certificates.path("upload.bin")
        try Data(repeating: 0x55, count: 512 * 1024).write(to: URL(fileURLWithPath: upload))
        let transfers = try await Curl.run(
            setup.tls + [version, "-H", "Expect:", "--data-binary", "@" + upload, setup.url("/refuse"), "--next"]
                + setup.tls + [version, setup.url(Self.device)])
        try await setup.stop()
        #expect(transfers.map(\.status) == [413, 200], "\(transfers.map(\.body))")
        #expect(transfers.first?.json?["refused"] as? Bool == true)
        #expect(transfers.map(\.connects) == [1, 0], "the client connection carried the next request")
        let refused = try #require(setup.balancer.requestLog.first { $0.metadata["path"] == "/refuse" })
        #expect(refused.metadata["status"] == "413" && refused.metadata["outcome"] == "answered", "\(refused)")
        if version == "--http1.1" {
            // HTTP/1.1 cannot stop an upload but by closing: the whole body was read. (Over HTTP/2
            // curl may reset the stream once it has the answer.)
            #expect(refused.metadata["bytes_in"] == String(512 * 1024), "\(refused)")
        }
    }

    @Test func behindAFrontBalancerTheClientItNamesIsForwarded() async throws {
        let setup = try await Self.start(nodes: 1) { configuration in
            configuration.listeners[0].proxyProtocolFrom = [AddressRange("127.0.0.1/32")!]
        }
        let header = Array("PROXY TCP4 192.0.2.7 127.0.0.1 51000 443\r\n".utf8)
        let connection = try await TLSTestHTTP.connect(
            to: try setup.balancer.address("web"), context: try TLSTestHTTP.context(setup.certificates),
            preamble: header)
        let answer = try await TLSTestHTTP.exchange(
            "GET", Self.device, on: connection, headers: [("X-Forwarded-For", "6.6.6.6")])
        try await setup.stop()
        #expect(answer.json?["x_forwarded_for"] as? String == "192.0.2.7")
        let line = setup.balancer.accessLog.first { $0.metadata["listener"] == "web" }
        #expect(line?.metadata["client"] == "192.0.2.7:51000")
        #expect(line?.metadata["via"]?.hasPrefix("127.0.0.1:") == true)
    }

    @Test func aShutdownClosesIdleKeptAliveConnectionsAtOnce() async throws {
        let setup = try await Self.start(nodes: 1) { $0.shutdownGrace = .seconds(10) }
        let connection = try await TLSTestHTTP.connect(
            to: try setup.balancer.address("web"), context: try TLSTestHTTP.context(setup.certificates))
        let (first, stopped) = try await connection.executeThenClose { inbound, outbound in
            var reader = HTTPResponseReader(inbound)
            try await outbound.write(ByteBuffer(string: "GET \(Self.device) HTTP/1.1\r\nHost: ums\r\n\r\n"))
            let first = await reader.next()
            let started = ContinuousClock.now
            try await setup.balancer.stop()
            _ = await reader.untilClosed()
            return (first, ContinuousClock.now - started)
        }
        await setup.nodes.stop()
        setup.certificates.directory.remove()
        #expect(first?.status == 200)
        #expect(stopped < .seconds(5), "an idle keep-alive connection does not hold the shutdown for its grace")
        #expect(setup.balancer.accessLog.last?.metadata["outcome"] == "shutdown")
    }

    @Test func aDrainedNodeLosesItsIdleConnectionsAndNewRequests() async throws {
        let setup = try await Self.start(nodes: 2, threads: 1)
        _ = try await Curl.run(setup.tls + Array(repeating: setup.url(Self.device), count: 4))
        let used = setup.nodes.nodes.filter { $0.connectionsUsed > 0 }
        #expect(used.count == 2, "least connections spreads the requests")
        #expect(await setup.balancer.balancer.setAdminState(.draining, of: "ums1", actor: "test"))
        let node = setup.nodes.node("ums1")
        let deadline = ContinuousClock.now + .seconds(10)
        // Its pooled connection is closed within a sweep (health probes come and go).
        while node.open > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(node.open == 0)
        let seenBefore = node.seen.count
        let transfers = try await Curl.run(setup.tls + Array(repeating: setup.url(Self.device), count: 4))
        #expect(transfers.allSatisfy { $0.json?["node"] as? String == "ums2" })
        #expect(node.seen.count == seenBefore)
        try await setup.stop()
    }
}
