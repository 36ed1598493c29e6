import BalancerCore
import BalancerNIO
import BalancerTesting
import Foundation
import NIOCore
import NIOSSL
import Testing

/// IGEL OS 12 devices' long-lived WebSockets (`/device-connector/device/ws-connect`) through the
/// balancer to simulated UMS Servers speaking TLS on their console port (a real server's 8443):
/// passed through on `by-sni`, terminated on `by-path`, across an update and a reconnect drain.
@Suite(.timeLimit(.minutes(1)))
struct WebSocketThroughBalancerTests {
    struct Setup {
        var certificates: TestCertificates
        var cluster: SimulatedCluster
        var balancer: RunningBalancer

        func stop() async throws {
            try await balancer.stop()
            await cluster.stop()
            certificates.directory.remove()
        }

        /// A device's WebSocket through the `by-sni` listener, with a server name the device rule lists.
        func sniWebSocket(device: Int = 1) async throws -> TestWebSocket {
            try await TestWebSocket.connect(
                to: try balancer.address("sni"), tls: try WebSocketThroughBalancerTests.passThroughTLS(certificates),
                serverName: "device\(device).devices.example.com")
        }
    }

    /// A TLS client context for the nodes' own certificate, reached through a `by-sni` listener
    /// under a device name (the chain is verified; the test certificate names hosts, not these names).
    static func passThroughTLS(_ certificates: TestCertificates) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .file(certificates.path("ca.pem"))
        configuration.certificateVerification = .noHostnameVerification
        return try NIOSSLContext(configuration: configuration)
    }

    /// Nodes with TLS on their console port; a `by-sni` listener (`sni`) and a `by-path` listener
    /// (`web`) in front of it; fast installs, drains and probes.
    func start(
        nodes: Int = 3, dataPath: DataPath = .automatic, drainTimeout: Duration = .seconds(2),
        configure: (inout BalancerConfiguration) -> Void = { _ in }
    ) async throws -> Setup {
        let certificates = try await TestCertificates.generate()
        let cluster = try await SimulatedCluster.start(count: nodes, tls: certificates)
        let ports = (sni: try FreePort.pick(), path: try FreePort.pick())
        let configuration = try RunningBalancer.configuration(for: cluster) { configuration in
            configuration.listeners.append(
                ListenerConfiguration(
                    name: "sni", bind: Endpoint(host: "127.0.0.1", port: ports.sni),
                    backendPort: cluster.consolePort,
                    classification: .bySNI(
                        SNIRules(
                            patterns: [.console: ["ums-console.example.com"], .device: ["*.devices.example.com"]],
                            defaultClass: .console))))
            configuration.listeners.append(
                PathListenerTests.pathListener(
                    certificates, port: ports.path, backendPort: cluster.consolePort))
            configuration.update.drainTimeout = drainTimeout
            configuration.update.slowStart = .zero
            configure(&configuration)
        }
        let balancer = try await RunningBalancer(configuration: configuration, dataPath: dataPath)
        for node in cluster.nodes.map(\.configuration.id) {
            try await balancer.waitUntil(node, "up and normal") { $0.health == .up && $0.mode == .normal }
        }
        return Setup(certificates: certificates, cluster: cluster, balancer: balancer)
    }

    /// Sends `count` messages each way-round and expects every echo, in order.
    func expectEchoes(_ socket: TestWebSocket, _ label: String, count: Int = 5) async throws {
        for index in 0..<count {
            try await socket.send("\(label) \(index)")
            #expect(try await socket.receive() == .text("\(label) \(index)"))
        }
    }

    /// Waits until `condition` holds (polled; at most `timeout`).
    func eventually(
        _ what: String, timeout: Duration = .seconds(10), _ condition: () async throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await !condition() {
            guard ContinuousClock.now < deadline else { throw TestKitError("timed out waiting for \(what)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    @Test(arguments: DataPath.allCases)
    func aWebSocketPassesABySNIListenerToTheNodeItself(_ dataPath: DataPath) async throws {
        let setup = try await start(dataPath: dataPath)
        let socket = try await setup.sniWebSocket()
        let node = try #require(socket.node)
        #expect(socket.clientCertificate == nil, "TLS passes through: no X-SSL-CERT reaches the node")
        try await expectEchoes(socket, "text")
        try await socket.send(binary: Array(0..<200))
        #expect(try await socket.receive() == .binary(Array(0..<200)))
        try await socket.ping(Array("are you there".utf8))
        #expect(try await socket.receive() == .pong(Array("are you there".utf8)))
        try await eventually("\(node) counting the WebSocket") { setup.cluster.node(node).webSocketsOpen == 1 }
        await socket.close()
        try await eventually("\(node) counting it closed") { setup.cluster.node(node).webSocketsOpen == 0 }
        try await setup.stop()
        let line = setup.balancer.accessLog.first { $0.metadata["listener"] == "sni" }
        #expect(line?.metadata["class"] == "device", "\(String(describing: line?.metadata))")
        #expect(line?.metadata["node"] == node)
    }

    @Test func aWebSocketThroughAByPathListenerCarriesTheClientCertificate() async throws {
        let setup = try await start()
        let forged = try String(contentsOfFile: setup.certificates.path("node.pem"), encoding: .utf8)
        let socket = try await TestWebSocket.connect(
            to: try setup.balancer.address("web"), tls: try TLSTestHTTP.context(setup.certificates),
            headers: [("X-SSL-CERT", RequestPolicy.urlEncoded(forged))])
        // The node saw the certificate the device presented to the balancer, never the forged header.
        #expect(socket.clientCertificate == "CN=device-00E0C5000001,O=IGEL OS 12 devices")
        let node = try #require(socket.node)
        try await expectEchoes(socket, "through by-path", count: 20)
        try await socket.send(binary: [0xFF, 0x00, 0x7F])
        #expect(try await socket.receive() == .binary([0xFF, 0x00, 0x7F]))
        try await eventually("\(node) counting the WebSocket") { setup.cluster.node(node).webSocketsOpen == 1 }
        await socket.close()
        try await eventually("\(node) counting it closed") { setup.cluster.node(node).webSocketsOpen == 0 }
        try await setup.stop()
        let line = setup.balancer.accessLog.first { $0.metadata["listener"] == "web" }
        #expect(line?.metadata["class"] == "device", "\(String(describing: line?.metadata))")
    }

    @Test func aWebSocketCarriesTrafficWhileAnotherNodeInstallsAndOneOnAnUpdateModeNodeToo() async throws {
        let setup = try await start()
        let first = try await setup.sniWebSocket(device: 1)
        let home = try #require(first.node)
        let other = try #require(setup.cluster.nodes.map(\.configuration.id).first { $0 != home })
        try await setup.cluster.install(other, version: "12.07.100", seconds: 0.5)
        // Both ways, all through the other node's install and its return in update mode.
        var round = 0
        while setup.cluster.node(other).mode != .update || setup.cluster.node(other).version.text != "12.07.100" {
            round += 1
            try await expectEchoes(first, "during the install, round \(round)", count: 1)
            guard round < 500 else { throw TestKitError("\(other) never came back in update mode") }
            try await Task.sleep(for: .milliseconds(20))
        }
        try await setup.balancer.waitUntil(other, "up in update mode") { $0.health == .up && $0.mode == .update }

        // A device that lands on the node in update mode is served there: least connections sends
        // the next WebSockets to the nodes holding fewest, so one reaches it within a few.
        var sockets: [TestWebSocket] = []
        for device in 2..<10 where !sockets.contains(where: { $0.node == other }) {
            sockets.append(try await setup.sniWebSocket(device: device))
        }
        let onUpdateNode = try #require(sockets.first { $0.node == other })
        #expect(onUpdateNode.mode == "update")
        try await expectEchoes(onUpdateNode, "served in update mode")
        try await expectEchoes(first, "still on \(home)")
        #expect(setup.cluster.node(home).webSocketsOpen >= 1)
        for socket in sockets + [first] { await socket.close() }
        try await setup.stop()
    }

    /// How the drain for a reconnect ends the WebSockets still open at `update.drain_timeout`:
    /// without `drain_rate`, the reconnect called then takes the node down, and the node says
    /// goodbye (1001); with it, the balancer closes them itself, paced, before calling the reconnect.
    enum DrainEnding: String, CaseIterable, Sendable {
        case byTheReconnect
        case byTheBalancer
    }

    @Test(arguments: DrainEnding.allCases)
    func aNodeDrainedForItsReconnectLosesItsWebSocketsAtTheDrainTimeoutAndNoMessageIsLost(_ ending: DrainEnding)
        async throws
    {
        let drainTimeout = Duration.milliseconds(600)
        let setup = try await start(nodes: 2, drainTimeout: drainTimeout) {
            if ending == .byTheBalancer { $0.update.drainRate = 50 }
        }
        let tls = try Self.passThroughTLS(setup.certificates)
        let address = try setup.balancer.address("sni")
        let devices = WebSocketDeviceLoad.start(devices: 4) { device in
            try await TestWebSocket.connect(
                to: address, tls: tls, serverName: "device\(device).devices.example.com", timeout: .seconds(3))
        }
        try await eventually("every device served") { devices.summary.echoed >= 8 }
        // ums1 updates first and comes up in update mode; then ums2, the last, renews the schema.
        for node in ["ums1", "ums2"] {
            try await setup.cluster.install(node, version: "12.07.100", seconds: 0.3)
            try await setup.cluster.waitUntil("\(node) back on 12.07.100") { _ in
                setup.cluster.node(node).version.text == "12.07.100"
                    && [.update, .normal].contains(setup.cluster.node(node).mode)
            }
            try await setup.balancer.waitUntil(node, "up again") { $0.health == .up && $0.mode != .installing }
        }
        // The balancer drains ums1 for its reconnect; its WebSockets stay until the drain timeout.
        try await setup.balancer.waitUntil("ums1", "drained for its reconnect") { $0.reconnectDrain }
        let drainSeen = ContinuousClock.now
        #expect(setup.cluster.node("ums1").webSocketsOpen > 0)
        try await eventually("ums1 without WebSockets") { setup.cluster.node("ums1").webSocketsOpen == 0 }
        let held = ContinuousClock.now - drainSeen
        // (Seen up to a poll late, so a little less than the timeout is still on time.)
        #expect(held >= drainTimeout - .milliseconds(150), "ended \(held) into a \(drainTimeout) drain")
        try await eventually("the update completed", timeout: .seconds(20)) {
            await setup.balancer.balancer.updateRun().state == .completed
        }
        let echoedBefore = devices.summary.echoed
        try await eventually("more echoes after the reconnect") { devices.summary.echoed > echoedBefore + 8 }
        let summary = await devices.stop()
        try await eventually("every WebSocket closed") { setup.cluster.nodes.allSatisfy { $0.webSocketsOpen == 0 } }
        try await setup.stop()

        // None lost for good: every message got its echo, after a reconnect and resend if need be.
        #expect(summary.lost == 0, "\(summary.sent) sent, \(summary.echoed) echoed")
        #expect(summary.wrongAnswers.isEmpty, "\(summary.wrongAnswers.prefix(3))")
        #expect(summary.reconnects >= 4, "\(summary.connections)")
        // Installing nodes say goodbye with 1001 to the devices they held.
        let normal = summary.connections.filter { $0.mode == "normal" && $0.end != .stopped }
        #expect(!normal.isEmpty && normal.allSatisfy { $0.end == .closeFrame(1001) }, "\(normal)")
        let updateMode = summary.connections.filter { $0.node == "ums1" && $0.mode == "update" }
        #expect(!updateMode.isEmpty, "no device was on ums1 in update mode: \(summary.connections)")
        let drained = setup.balancer.accessLog.filter { $0.metadata["outcome"] == "drained" }
        switch ending {
        case .byTheReconnect:
            #expect(updateMode.allSatisfy { $0.end == .closeFrame(1001) }, "\(updateMode)")
            #expect(drained.isEmpty, "\(drained.map(\.metadata))")
        case .byTheBalancer:
            // Closed by the balancer (no close frame), before the node was asked to reconnect.
            #expect(updateMode.allSatisfy { $0.end == .dropped }, "\(updateMode)")
            // Each of them is a drained connection; a device still mid-upgrade when the drain timed out
            // is one more (it never saw the node's answer, so it is not in `updateMode`).
            #expect(drained.count >= updateMode.count, "\(drained.map(\.metadata))")
            #expect(drained.allSatisfy { $0.metadata["node"] == "ums1" })
        }
        // After the drain, every device is on a server in normal mode.
        let last = Dictionary(grouping: summary.connections, by: \.device).compactMapValues(\.last)
        #expect(last.values.allSatisfy { $0.mode == "normal" }, "\(last)")
    }
}
