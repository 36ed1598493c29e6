import BalancerCore
import BalancerNIO
import BalancerTesting
import Foundation
import NIOCore
import Testing

/// A `by-sni` listener classifies by the TLS server name without terminating TLS: real TLS
/// clients complete their handshake with the node itself.
@Suite(.timeLimit(.minutes(1)))
struct SNIListenerTests {
    struct Setup {
        var certificates: TestCertificates
        var backends: [any Channel]
        var balancer: RunningBalancer

        func stop() async throws {
            try await balancer.stop()
            for backend in backends { try? await backend.close() }
            certificates.directory.remove()
        }
    }

    /// Where a by-sni listener is bound and which executor carries it: the relay, NIO asked for,
    /// and NIO because the listener is bound to a host name. Every test runs on each.
    struct Bind: Sendable, CustomTestStringConvertible {
        var host: String
        var dataPath: DataPath
        var testDescription: String { "\(host) \(dataPath)" }
    }

    static let binds = [
        Bind(host: "127.0.0.1", dataPath: .automatic), Bind(host: "127.0.0.1", dataPath: .nio),
        Bind(host: "localhost", dataPath: .automatic),
    ]

    func start(bind: Bind, handshakeTimeout: Duration = .seconds(5)) async throws -> Setup {
        let certificates = try await TestCertificates.generate()
        let port = try FreePort.pick()
        var backends: [any Channel] = []
        for (index, host) in ["127.0.0.11", "127.0.0.12"].enumerated() {
            backends.append(
                try await TLSTestBackend.start(
                    name: "ums\(index + 1)", host: host, port: port, certificates: certificates))
        }
        var configuration = BalancerConfiguration(
            listeners: [
                ListenerConfiguration(
                    name: "web", bind: Endpoint(host: bind.host, port: try FreePort.pick()), backendPort: port,
                    classification: .bySNI(
                        SNIRules(patterns: [.console: ["ums-console.example.com"]], defaultClass: .device)))
            ],
            nodes: [
                NodeConfiguration(id: "ums1", host: "127.0.0.11"), NodeConfiguration(id: "ums2", host: "127.0.0.12"),
            ])
        configuration.listeners[0].handshakeTimeout = handshakeTimeout
        configuration.threads = 2
        configuration.shutdownGrace = .seconds(2)
        let balancer = try await RunningBalancer(configuration: configuration, dataPath: bind.dataPath)
        return Setup(certificates: certificates, backends: backends, balancer: balancer)
    }

    /// A verified TLS handshake with a node through the balancer; returns the node's greeting.
    func greeting(_ setup: Setup, serverName: String) async throws -> String {
        try await TLSTestClient.greeting(
            from: try setup.balancer.address("web"), serverName: serverName, caFile: setup.certificates.path("ca.pem"))
    }

    @Test(arguments: binds) func consoleNamesGoOnlyToNormalNodesAndOthersToDevices(bind: Bind) async throws {
        let setup = try await start(bind: bind)
        #expect(await setup.balancer.balancer.overrideMode(.update, of: "ums1", actor: "test"))
        for _ in 0..<4 {
            #expect(try await greeting(setup, serverName: "ums-console.example.com") == "ums2")
        }
        // Least-connections sees the console connections just closed until the balancer has noted
        // their end, so a loaded machine may send a few devices to ums1 in a row: allow for that.
        var deviceNodes: Set<String> = []
        for _ in 0..<40 where deviceNodes.count < 2 {
            deviceNodes.insert(try await greeting(setup, serverName: "igel-device.example.com"))
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(deviceNodes == ["ums1", "ums2"])
        try await setup.stop()
        let classified = setup.balancer.accessLog.compactMap { $0.metadata["classified"] }
        #expect(classified.contains("sni=ums-console.example.com"))
        #expect(
            setup.balancer.accessLog.filter { $0.metadata["class"] == "console" }.allSatisfy {
                $0.metadata["node"] == "ums2"
            })
    }

    @Test(arguments: binds) func plainHTTPOnTheTLSPortIsClosedAndLogged(bind: Bind) async throws {
        let setup = try await start(bind: bind)
        let connection = try await TestClient.connect(to: try setup.balancer.address("web"))
        let answer = try await connection.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: ums\r\n\r\n"))
            return try await TestClient.readAll(inbound)
        }
        #expect(answer.readableBytes == 0)
        try await setup.stop()
        let line = try #require(setup.balancer.accessLog.first)
        #expect(line.metadata["outcome"] == "handshake-failed")
        #expect(line.metadata["reason"] == "not a TLS handshake")
    }

    @Test(arguments: binds) func aClientThatClosesWithoutAByteIsClosedQuietly(bind: Bind) async throws {
        // A front balancer's TCP check: no ClientHello, no node, nothing to warn about.
        let setup = try await start(bind: bind)
        let connection = try await TestClient.connect(to: try setup.balancer.address("web"))
        await TestClient.close(connection)
        // Its end, not the shutdown's: a stop racing the close would end it as `shutdown`.
        try await setup.balancer.waitForAccessLog(1)
        try await setup.stop()
        let line = try #require(setup.balancer.accessLog.first)
        #expect(line.metadata["outcome"] == "closed" && line.metadata["node"] == "-", "\(line)")
        #expect(line.level == .info && line.metadata["reason"] == nil, "\(line)")
    }

    @Test(arguments: binds) func aTooSlowClientHelloIsClosedAfterTheHandshakeTimeout(bind: Bind) async throws {
        let setup = try await start(bind: bind, handshakeTimeout: .milliseconds(300))
        let started = ContinuousClock.now
        let connection = try await TestClient.connect(to: try setup.balancer.address("web"))
        let answer = try await connection.executeThenClose { inbound, outbound in
            // A record header, then nothing.
            try await outbound.write(ByteBuffer(bytes: [0x16, 0x03, 0x01, 0x00, 0x80]))
            return try await TestClient.readAll(inbound)
        }
        #expect(answer.readableBytes == 0)
        #expect(ContinuousClock.now - started >= .milliseconds(250))
        #expect(ContinuousClock.now - started < .seconds(3))
        try await setup.stop()
        #expect(setup.balancer.accessLog.first?.metadata["outcome"] == "handshake-failed")
    }

    @Test(arguments: binds) func anOversizedClientHelloIsClosed(bind: Bind) async throws {
        let setup = try await start(bind: bind)
        let connection = try await TestClient.connect(to: try setup.balancer.address("web"))
        let answer = try? await connection.executeThenClose { inbound, outbound in
            // A handshake message announcing 1 MiB, sent in full-size records.
            var bytes: [UInt8] = [0x01, 0x10, 0x00, 0x00] + Array(repeating: 0x41, count: 20_000)
            var records: [UInt8] = []
            while !bytes.isEmpty {
                let chunk = bytes.prefix(16_384)
                records += [0x16, 0x03, 0x01, UInt8(chunk.count >> 8), UInt8(chunk.count & 0xff)] + chunk
                bytes.removeFirst(chunk.count)
            }
            try await outbound.write(ByteBuffer(bytes: records))
            return try await TestClient.readAll(inbound)
        }
        // Closed with unread bytes pending, the socket may end in a reset rather than an EOF.
        #expect((answer?.readableBytes ?? 0) == 0)
        try await setup.stop()
        #expect(setup.balancer.accessLog.first?.metadata["reason"]?.contains("larger than") == true)
    }
}
