import BalancerCore
import BalancerNIO
import BalancerTesting
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Testing

/// A `by-path` listener ends TLS with the balancer's certificate, reads the request head, and
/// routes by path to nodes it reaches over TLS, forwarding the client certificate in `X-SSL-CERT`.
@Suite(.timeLimit(.minutes(1)))
struct PathListenerTests {
    struct Setup {
        var certificates: TestCertificates
        var cluster: SimulatedCluster
        var balancer: RunningBalancer

        var address: SocketAddress { get throws { try balancer.address("web") } }

        func stop() async throws {
            try await balancer.stop()
            await cluster.stop()
            certificates.directory.remove()
        }
    }

    static func pathListener(
        _ certificates: TestCertificates, port: Int, backendPort: Int, handshakeTimeout: Duration = .seconds(5),
        clientCertificate: ClientCertificatePolicy = .required
    ) -> ListenerConfiguration {
        var tls = ListenerTLS(
            certificate: certificates.path("balancer.pem"), privateKey: certificates.path("balancer.key"),
            clientCA: certificates.path("ca.pem"))
        tls.clientCertificate = clientCertificate
        var listener = ListenerConfiguration(
            name: "web", bind: Endpoint(host: "127.0.0.1", port: port), backendPort: backendPort,
            classification: .byPath(
                PathListenerSettings(tls: tls, backendTLS: .trustRoots(certificates.path("ca.pem")))))
        listener.handshakeTimeout = handshakeTimeout
        return listener
    }

    func start(
        handshakeTimeout: Duration = .seconds(5), clientCertificate: ClientCertificatePolicy = .required
    ) async throws -> Setup {
        let certificates = try await TestCertificates.generate()
        let cluster = try await SimulatedCluster.start(tls: certificates)
        let port = try FreePort.pick()
        let balancer = try await RunningBalancer.start(for: cluster) { configuration in
            configuration.listeners.append(
                Self.pathListener(
                    certificates, port: port, backendPort: cluster.consolePort, handshakeTimeout: handshakeTimeout,
                    clientCertificate: clientCertificate))
        }
        for node in ["ums1", "ums2", "ums3"] {
            try await balancer.waitUntil(node, "up and normal") { $0.health == .up && $0.mode == .normal }
        }
        return Setup(certificates: certificates, cluster: cluster, balancer: balancer)
    }

    func device(_ setup: Setup, headers: [(String, String)] = []) async throws -> TestHTTP.Response {
        try await TLSTestHTTP.request(
            "GET", "/device-connector/device/00E0C5000001/profile", to: try setup.address,
            context: try TLSTestHTTP.context(setup.certificates), headers: headers)
    }

    func login(_ setup: Setup) async throws -> TestHTTP.Response {
        try await TLSTestHTTP.request(
            "POST", "/console/login", to: try setup.address, context: try TLSTestHTTP.context(setup.certificates),
            body: "{}")
    }

    @Test func devicePathsReachUpdateModeNodesAndConsoleLoginsNever() async throws {
        let setup = try await start()
        #expect(await setup.balancer.balancer.overrideMode(.update, of: "ums1", actor: "test"))
        #expect(await setup.balancer.balancer.overrideMode(.update, of: "ums2", actor: "test"))
        var deviceNodes: Set<String> = []
        for _ in 0..<6 {
            let answer = try await device(setup)
            #expect(answer.status == 200)
            deviceNodes.insert(answer.json?["node"] as? String ?? "?")
        }
        #expect(deviceNodes.contains("ums1") || deviceNodes.contains("ums2"))
        for _ in 0..<3 {
            let answer = try await login(setup)
            #expect(answer.status == 200)
            #expect(answer.json?["node"] as? String == "ums3")
        }
        #expect(await setup.balancer.balancer.overrideMode(.update, of: "ums3", actor: "test"))
        let refused = try await login(setup)
        #expect(refused.status == 503)
        #expect(refused.body.hasPrefix("all servers in update mode: console logins are paused"))
        #expect(try await device(setup).status == 200)
        try await setup.stop()
        // Each request is routed (and refused) on its own: the request's line says so.
        #expect(setup.balancer.requestLog.contains { $0.metadata["outcome"] == "refused" })
    }

    @Test func curlWithTheDeviceCertificateGetsItsProfile() async throws {
        // curl is a real client users have; `.ci/run` installs it. Missing, the test fails and says so.
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/curl"), "install Debian's curl")
        let setup = try await start()
        let port = try setup.address.port ?? 0
        let result = try await ProcessHarness.runProgram(
            at: "/usr/bin/curl",
            [
                "-sS", "--max-time", "10", "--cacert", setup.certificates.path("ca.pem"), "--cert",
                setup.certificates.path("device.pem"), "--key", setup.certificates.path("device.key"),
                "https://127.0.0.1:\(port)/device-connector/device/00E0C5000001/profile",
            ])
        #expect(result.status == 0, "\(result.output)")
        #expect(
            result.output.contains("\"client_cert\":\"CN=device-00E0C5000001,O=IGEL OS 12 devices\""),
            "\(result.output)")
        try await setup.stop()
    }

    @Test func keptAliveRequestsReachTheSimulatedServersOverFewPooledConnections() async throws {
        let setup = try await start()
        #expect(await setup.balancer.balancer.overrideMode(.update, of: "ums1", actor: "test"))
        let port = try setup.address.port ?? 0
        let tls = [
            "--cacert", setup.certificates.path("ca.pem"), "--cert", setup.certificates.path("device.pem"), "--key",
            setup.certificates.path("device.key"),
        ]
        let profile = "https://127.0.0.1:\(port)/device-connector/device/00E0C5000001/profile"
        let login = ["-X", "POST", "-d", "{}", "https://127.0.0.1:\(port)/console/login"]
        var transfers: [Curl.Transfer] = []
        // Three clients, HTTP/1.1 and HTTP/2, each with device requests and console logins mixed on one connection.
        for version in ["--http1.1", "--http2", "--http1.1"] {
            transfers += try await Curl.run(
                tls + [version] + Array(repeating: profile, count: 8) + ["--next"] + tls + [version] + login
                    + ["--next"] + tls + [version] + login)
        }
        try await setup.stop()

        #expect(transfers.count == 30)
        #expect(transfers.allSatisfy { $0.status == 200 }, "\(transfers.map(\.status))")
        #expect(transfers.filter { $0.connects > 0 }.count == 3, "one connection per client")
        #expect(setup.cluster.node("ums1").consoleLoginsInUpdateMode == 0, "no login reached the update-mode node")
        let accepted = setup.cluster.nodes.map { $0.connectionsAccepted.console }.reduce(0, +)
        // Without reuse each of the 30 requests costs a node connection (and a TLS handshake); with
        // it, at most one per node (3) and event loop (the test balancer runs 2).
        #expect(accepted <= 6, "30 requests took \(accepted) node connections")
    }

    @Test func theNodeSeesTheVerifiedClientCertificateNeverAForgedOne() async throws {
        let setup = try await start()
        let forged = try String(contentsOfFile: setup.certificates.path("node.pem"), encoding: .utf8)
        let answer = try await device(
            setup, headers: [("X-SSL-CERT", RequestPolicy.urlEncoded(forged)), ("x-ssl-cert", "forged")])
        #expect(answer.status == 200)
        #expect(answer.json?["client_cert"] as? String == "CN=device-00E0C5000001,O=IGEL OS 12 devices")
        try await setup.stop()
    }

    @Test func aReloadServesNewCertificatesToNewConnectionsWhileOldOnesContinue() async throws {
        let setup = try await start()
        let renewed = try await TestCertificates.generate()
        defer { renewed.directory.remove() }
        let oldSerial = try NIOSSLCertificate.fromPEMFile(setup.certificates.path("balancer.pem"))[0].serialNumber
        let newSerial = try NIOSSLCertificate.fromPEMFile(renewed.path("balancer.pem"))[0].serialNumber
        let anyServer = try TLSTestHTTP.context(setup.certificates, verifyServer: false)
        let old = try await TLSTestHTTP.connect(to: try setup.address, context: anyServer)
        #expect(try await TLSTestHTTP.serverCertificate(of: old)?.serialNumber == oldSerial)

        var configuration = setup.balancer.balancer.configuration
        guard let index = configuration.listeners.firstIndex(where: { $0.name == "web" }),
            case .byPath(var settings) = configuration.listeners[index].classification
        else { throw TestKitError("no web listener") }
        settings.tls.certificate = renewed.path("balancer.pem")
        settings.tls.privateKey = renewed.path("balancer.key")
        configuration.listeners[index].classification = .byPath(settings)
        try await setup.balancer.balancer.reload(to: configuration)

        let new = try await TLSTestHTTP.connect(to: try setup.address, context: anyServer)
        #expect(try await TLSTestHTTP.serverCertificate(of: new)?.serialNumber == newSerial)
        let newAnswer = try await TLSTestHTTP.exchange("GET", "/device-connector/device/00E0C5000001/profile", on: new)
        #expect(newAnswer.status == 200)
        // The connection made before the reload still works, on the old certificate.
        let oldAnswer = try await TLSTestHTTP.exchange("GET", "/device-connector/device/00E0C5000001/profile", on: old)
        #expect(oldAnswer.status == 200)

        // Renewed in place (same file names, unchanged configuration text): a reload re-reads the files.
        let original = setup.balancer.balancer.configuration
        let renewedAgain = try await TestCertificates.generate()
        defer { renewedAgain.directory.remove() }
        for name in ["balancer.pem", "balancer.key"] {
            try FileManager.default.removeItem(atPath: renewed.path(name))
            try FileManager.default.copyItem(atPath: renewedAgain.path(name), toPath: renewed.path(name))
        }
        try await setup.balancer.balancer.reload(to: original)
        let inPlaceSerial = try NIOSSLCertificate.fromPEMFile(renewedAgain.path("balancer.pem"))[0].serialNumber
        let third = try await TLSTestHTTP.connect(to: try setup.address, context: anyServer)
        #expect(try await TLSTestHTTP.serverCertificate(of: third)?.serialNumber == inPlaceSerial)
        try? await third.channel.close()
        try await setup.stop()
    }

    @Test func aRefusedLoginSaysWhatStatusSaysAndIsClosedAsSoonAsItIsAnswered() async throws {
        let setup = try await start()
        for node in ["ums1", "ums2", "ums3"] {
            #expect(await setup.balancer.balancer.overrideMode(.update, of: node, actor: "test"))
        }
        let run = await setup.balancer.balancer.updateRun()
        #expect(run.isRunning, "\(run.summary)")

        let refused = try await login(setup)
        #expect(refused.status == 503)
        #expect(
            refused.body.contains("(\(run.updated) of \(run.total) servers updated)"),
            "503 '\(refused.body)' against /status '\(run.summary)'")
        // A client that asks for the connection to close and never answers close_notify still sees
        // it closed once the 503 is written (without Connection: close it stays open for the next request).
        let impolite = try await TLSTestHTTP.exchangeNeverAnsweringCloseNotify(
            "POST /console/login HTTP/1.1\r\nHost: ums\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            to: try setup.address,
            context: try TLSTestHTTP.context(setup.certificates))
        #expect(impolite.answer.hasPrefix("HTTP/1.1 503 "), "\(impolite.answer)")
        #expect(impolite.closedAfter < .seconds(1), "closed \(impolite.closedAfter) after the request")
        try await setup.stop()

        let entry = setup.balancer.accessLog.last { $0.metadata["listener"] == "web" }
        #expect(entry?.metadata["bytes_out"].flatMap { Int($0) } ?? 0 > 100, "\(String(describing: entry?.metadata))")
    }

    @Test func withOptionalClientCertificatesDevicesAndConsolesShareThePort() async throws {
        let setup = try await start(clientCertificate: .optional)
        let withCertificate = try TLSTestHTTP.context(setup.certificates)
        let without = { try TLSTestHTTP.context(setup.certificates, clientCertificate: false) }
        let profile = "/device-connector/device/00E0C5000001/profile"

        // An OS 12 device presents its certificate; the node sees it in X-SSL-CERT.
        let device = try await TLSTestHTTP.request("GET", profile, to: try setup.address, context: withCertificate)
        #expect(device.status == 200)
        #expect(device.json?["client_cert"] is String, "\(device.body)")
        // The Console presents none and still logs in, on the same port.
        let login = try await TLSTestHTTP.request(
            "POST", "/console/login", to: try setup.address, context: try without(), body: "{}")
        #expect(login.status == 200, "\(login.body)")
        // A device path without a certificate is forwarded without X-SSL-CERT: the node decides.
        let bare = try await TLSTestHTTP.request("GET", profile, to: try setup.address, context: try without())
        #expect(bare.status == 200)
        #expect(bare.json?["client_cert"] is NSNull, "\(bare.body)")
        // A certificate from another CA is still refused at the handshake.
        let stranger = try await TestCertificates.generate()
        defer { stranger.directory.remove() }
        await #expect(throws: (any Error).self) {
            _ = try await TLSTestHTTP.request(
                "GET", profile, to: try setup.address,
                context: try TLSTestHTTP.context(setup.certificates, clientIdentity: stranger))
        }
        try await setup.stop()

        let presented = setup.balancer.accessLog.filter { $0.metadata["listener"] == "web" }
            .compactMap { $0.metadata["client_cert"] }
        #expect(presented.filter { $0 == "present" }.count == 1, "\(presented)")
        #expect(presented.filter { $0 == "none" }.count == 2, "\(presented)")
    }

    @Test func anAdditionalCertificateIsPresentedToTheServerNamesItCovers() async throws {
        let setup = try await start()
        var configuration = setup.balancer.balancer.configuration
        guard let index = configuration.listeners.firstIndex(where: { $0.name == "web" }),
            case .byPath(var settings) = configuration.listeners[index].classification
        else { throw TestKitError("no web listener") }
        // node.pem names DNS:localhost; balancer.pem stays the default for every other name.
        settings.tls.additional = [
            CertificateFiles(
                certificate: setup.certificates.path("node.pem"), privateKey: setup.certificates.path("node.key"))
        ]
        configuration.listeners[index].classification = .byPath(settings)
        try await setup.balancer.balancer.reload(to: configuration)

        let serial = { (name: String) in
            try NIOSSLCertificate.fromPEMFile(setup.certificates.path(name))[0].serialNumber
        }
        let context = try TLSTestHTTP.context(setup.certificates)
        let local = try await TLSTestHTTP.connect(to: try setup.address, context: context, serverName: "localhost")
        #expect(try await TLSTestHTTP.serverCertificate(of: local)?.serialNumber == serial("node.pem"))
        let answer = try await TLSTestHTTP.exchange("GET", "/device-connector/device/00E0C5000001/profile", on: local)
        #expect(answer.status == 200)
        let other = try await TLSTestHTTP.connect(to: try setup.address, context: context)
        #expect(try await TLSTestHTTP.serverCertificate(of: other)?.serialNumber == serial("balancer.pem"))
        try? await other.channel.close()
        try await setup.stop()
    }

    @Test func badClientsAreClosedAndLoggedWithoutDisturbingOthers() async throws {
        // Short enough to keep the test quick, long enough for a TLS handshake on a loaded machine.
        let setup = try await start(handshakeTimeout: .milliseconds(2500))
        let address = try setup.address

        // Plain HTTP on the TLS port.
        let plain = try await TestClient.connect(to: address)
        let plainAnswer = try await plain.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: ums\r\n\r\n"))
            return await TLSTestHTTP.readUntilClosed(inbound)
        }
        #expect(!String(buffer: plainAnswer).contains("HTTP/1.1 200"))

        // A client without a certificate while client_ca is set.
        await #expect(throws: (any Error).self) {
            _ = try await TLSTestHTTP.request(
                "GET", "/device-connector/x", to: address,
                context: try TLSTestHTTP.context(setup.certificates, clientCertificate: false))
        }

        // An oversized head.
        let oversized = try await TLSTestHTTP.request(
            "GET", "/console/login", to: address, context: try TLSTestHTTP.context(setup.certificates),
            headers: [("X-Big", String(repeating: "a", count: 20_000))])
        #expect(oversized.status == 431)

        // A head that never completes.
        let started = ContinuousClock.now
        let slow = try await TLSTestHTTP.connect(to: address, context: try TLSTestHTTP.context(setup.certificates))
        let slowAnswer = try await slow.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "GET /device-connector/ HTTP/1.1\r\nHost:"))
            return await TLSTestHTTP.readUntilClosed(inbound)
        }
        #expect(slowAnswer.readableBytes == 0)
        #expect(ContinuousClock.now - started < .seconds(6))

        // Everyone else is served as before.
        #expect(try await device(setup).status == 200)
        try await setup.stop()

        let web = setup.balancer.accessLog.filter { $0.metadata["listener"] == "web" }
        let reasons = web.compactMap { record -> String? in
            guard let outcome = record.metadata["outcome"] else { return nil }
            return "\(outcome): \(record.metadata["reason"] ?? "-")"
        }
        #expect(reasons.contains { $0.hasPrefix("handshake-failed: TLS handshake failed") }, "\(reasons)")
        #expect(reasons.contains { $0.hasPrefix("bad-request: request head larger than") }, "\(reasons)")
        #expect(reasons.contains { $0.hasPrefix("handshake-failed: no complete request head") }, "\(reasons)")
        #expect(reasons.filter { $0.hasPrefix("handshake-failed: TLS handshake failed") }.count >= 2, "\(reasons)")
    }

    @Test func aClientThatClosesWithoutSendingAByteIsNoFailedHandshake() async throws {
        let setup = try await start()
        let address = try setup.address
        // A front balancer's TCP check or a port scan: connect, send nothing, close (at once, or
        // after a half-close).
        for halfCloseFirst in [false, true] {
            let check = try await TestClient.connect(to: address)
            try await check.executeThenClose { inbound, outbound in
                guard halfCloseFirst else { return }
                outbound.finish()
                _ = await TLSTestHTTP.readUntilClosed(inbound)
            }
        }
        // A byte that is not TLS still fails the handshake.
        let plain = try await TestClient.connect(to: address)
        try await plain.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n"))
            _ = await TLSTestHTTP.readUntilClosed(inbound)
        }
        #expect(try await device(setup).status == 200)
        try await setup.stop()

        let unserved = setup.balancer.accessLog.filter {
            $0.metadata["listener"] == "web" && $0.metadata["requests"] == "0"
        }
        #expect(unserved.count == 3, "\(unserved)")
        let silent = unserved.filter { $0.metadata["bytes_in"] == "0" && $0.metadata["outcome"] == "closed" }
        #expect(silent.count == 2, "\(unserved)")
        #expect(silent.allSatisfy { $0.level == .info && $0.metadata["reason"] == nil }, "\(silent)")
        #expect(unserved.filter { $0.metadata["outcome"] == "handshake-failed" }.count == 1, "\(unserved)")
    }

    @Test func aWebSocketUpgradeCarriesBytesBothWaysAfterTheHead() async throws {
        let certificates = try await TestCertificates.generate()
        let backendPort = try FreePort.pick()
        let backend = try await UpgradeEchoBackend.start(host: "127.0.0.11", port: backendPort, certificates)
        var listener = Self.pathListener(certificates, port: try FreePort.pick(), backendPort: backendPort)
        if case .byPath(var settings) = listener.classification {
            settings.backendTLS = .noVerification
            listener.classification = .byPath(settings)
        }
        var configuration = BalancerConfiguration(
            listeners: [listener], nodes: [NodeConfiguration(id: "ums1", host: "127.0.0.11")])
        configuration.threads = 2
        configuration.shutdownGrace = .seconds(2)
        let balancer = try await RunningBalancer(configuration: configuration)

        let connection = try await TLSTestHTTP.connect(
            to: try balancer.address("web"), context: try TLSTestHTTP.context(certificates))
        let (head, echoed) = try await connection.executeThenClose { inbound, outbound in
            try await outbound.write(
                ByteBuffer(
                    string: "GET /device-connector/device/ws-connect HTTP/1.1\r\nHost: ums\r\n"
                        + "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"))
            var iterator = inbound.makeAsyncIterator()
            var head = ""
            while !head.contains("\r\n\r\n"), let chunk = try await iterator.next() { head += String(buffer: chunk) }
            var echoed = ""
            for message in ["ping", "pong", String(repeating: "x", count: 50_000)] {
                try await outbound.write(ByteBuffer(string: message))
                echoed = ""
                while echoed.count < message.count, let chunk = try await iterator.next() {
                    echoed += String(buffer: chunk)
                }
                if echoed != message { break }
            }
            return (head, echoed)
        }
        #expect(head.hasPrefix("HTTP/1.1 101 Switching Protocols\r\n"))
        #expect(head.contains("X-Saw-Client-Certificate: true"))
        #expect(echoed.count == 50_000)
        try await balancer.stop()
        try await backend.close()
        certificates.directory.remove()
        #expect(
            balancer.accessLog.first?.metadata["classified"] == "GET /device-connector/device/ws-connect client-cert")
    }
}

/// A TLS node that answers an upgrade with `101 Switching Protocols` and then echoes, as a WebSocket would carry frames.
enum UpgradeEchoBackend {
    static func start(host: String, port: Int, _ certificates: TestCertificates) async throws -> any Channel {
        let context = try NIOSSLContext(
            configuration: .makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(certificates.path("node.pem")).map {
                    .certificate($0)
                },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: certificates.path("node.key"), format: .pem))))
        return try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                    try channel.pipeline.syncOperations.addHandler(UpgradeEcho())
                }
            }
            .bind(host: host, port: port).get()
    }

    final class UpgradeEcho: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        private var head = ByteBuffer()
        private var upgraded = false

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = unwrapInboundIn(data)
            guard !upgraded else {
                context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
                return
            }
            head.writeBuffer(&bytes)
            let text = String(buffer: head)
            guard let end = text.range(of: "\r\n\r\n") else { return }
            upgraded = true
            let sawCertificate = text[..<end.lowerBound].contains("X-SSL-CERT: -----BEGIN%20CERTIFICATE")
            let answer =
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "X-Saw-Client-Certificate: \(sawCertificate)\r\n\r\n" + text[end.upperBound...]
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: answer)), promise: nil)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}
