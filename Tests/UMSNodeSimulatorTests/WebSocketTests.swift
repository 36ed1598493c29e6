import BalancerTesting
import Foundation
import NIOCore
import Testing
import UMSNodeSimulator

/// The devices' WebSocket on the console port (`/device-connector/device/ws-connect`), RFC 6455.
@Suite("Node WebSockets", .timeLimit(.minutes(1)))
struct WebSocketTests {
    static let path = "/device-connector/device/ws-connect"

    func consoleAddress(_ cluster: TestCluster, _ index: Int) throws -> SocketAddress {
        try SocketAddress(ipAddress: cluster.host(index), port: cluster.nodes[index].ports.console)
    }

    /// Polls until node `index` reports `expected` open WebSockets, in its status JSON and its property.
    func expectOpen(_ cluster: TestCluster, _ index: Int, _ expected: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(5)
        var reported = try await cluster.status(index)["websockets_open"] as? Int
        while reported != expected, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            reported = try await cluster.status(index)["websockets_open"] as? Int
        }
        #expect(reported == expected)
        #expect(cluster.nodes[index].webSocketsOpen == expected)
    }

    /// The status of the answer that refused an upgrade (nil if it upgraded or failed otherwise).
    func refusal(to address: SocketAddress, path: String) async -> Int? {
        do {
            let socket = try await TestWebSocket.connect(to: address, path: path)
            await socket.abort()
            return nil
        } catch {
            return (error as? TestWebSocket.NotUpgraded)?.status
        }
    }

    @Test func theUpgradeAnswersWithTheAcceptKeyOfRFC6455AndNamesTheNode() async throws {
        try await TestCluster.with(count: 1) { cluster in
            try await TestConnection.with(host: cluster.host(0), port: cluster.nodes[0].ports.console) { connection in
                // The handshake example of RFC 6455, section 1.3.
                try await connection.send(
                    "GET \(Self.path) HTTP/1.1\r\nHost: ums\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
                let answer = try await connection.readResponse()
                #expect(answer.status == 101)
                #expect(answer.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
                #expect(answer.header("Upgrade")?.lowercased() == "websocket")
                #expect(answer.header("X-UMS-Node") == "ums1")
                #expect(answer.header("X-UMS-Mode") == "normal")
                #expect(answer.header("X-UMS-Client-Cert") == nil)
            }
        }
    }

    @Test func textAndBinaryMessagesAreEchoedAndPingsAnswered() async throws {
        try await TestCluster.with(count: 1) { cluster in
            let socket = try await TestWebSocket.connect(to: try consoleAddress(cluster, 0))
            #expect(socket.node == "ums1")
            try await socket.send("hello from 00E0C5000001")
            #expect(try await socket.receive() == .text("hello from 00E0C5000001"))
            let bytes = (0..<60_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            try await socket.send(binary: bytes)
            #expect(try await socket.receive() == .binary(bytes))
            try await socket.ping([1, 2, 3])
            #expect(try await socket.receive() == .pong([1, 2, 3]))
            // Many messages in a row come back in order.
            for index in 0..<50 { try await socket.send("message \(index)") }
            for index in 0..<50 { #expect(try await socket.receive() == .text("message \(index)")) }
            await socket.close()
        }
    }

    @Test func theStatusCountsOpenWebSocketsUpAndDown() async throws {
        try await TestCluster.with(count: 1) { cluster in
            try await expectOpen(cluster, 0, 0)
            var sockets: [TestWebSocket] = []
            for _ in 0..<3 { sockets.append(try await TestWebSocket.connect(to: try consoleAddress(cluster, 0))) }
            try await expectOpen(cluster, 0, 3)
            // A close handshake, a device that just disappears, and another close.
            await sockets[0].close()
            try await expectOpen(cluster, 0, 2)
            await sockets[1].abort()
            try await expectOpen(cluster, 0, 1)
            await sockets[2].close(code: 1001)
            try await expectOpen(cluster, 0, 0)
        }
    }

    @Test func otherPathsAndTheDevicePortDoNotUpgrade() async throws {
        try await TestCluster.with(count: 1) { cluster in
            let console = try consoleAddress(cluster, 0)
            #expect(await refusal(to: console, path: "/device-connector/device/elsewhere") == 404)
            let device = try SocketAddress(ipAddress: cluster.host(0), port: cluster.nodes[0].ports.device)
            #expect(await refusal(to: device, path: Self.path) == 404)
            // The path itself without an upgrade, or with a version other than 13.
            #expect(try await cluster.console(0, "GET", Self.path).status == 426)
            let oldVersion = try await cluster.console(
                0, "GET", Self.path,
                headers: [
                    "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Version": "8",
                ])
            #expect(oldVersion.status == 426)
            try await expectOpen(cluster, 0, 0)
        }
    }

    @Test func installingClosesWithGoingAwayThenThePortRefusesAndUpdateModeServesAgain() async throws {
        try await TestCluster.with(count: 2, drainTimeoutSeconds: 3) { cluster in
            let socket = try await TestWebSocket.connect(to: try consoleAddress(cluster, 0))
            try await socket.send("before")
            #expect(try await socket.receive() == .text("before"))
            try await expectOpen(cluster, 0, 1)
            let install = try await cluster.control(0, "POST", "/control/install?version=12.07.100&seconds=1")
            #expect(install.status == 202)
            let goodbye = try await socket.receive()
            guard case .close(let code, _) = goodbye else {
                Issue.record("expected a close frame, got \(String(describing: goodbye))")
                return
            }
            #expect(code == 1001)
            #expect(await cluster.servicePortsRefuse(0))
            try await expectOpen(cluster, 0, 0)

            // Back in update mode, the node serves devices' WebSockets again.
            #expect(try await cluster.waitForMode(0, "update")["mode"] as? String == "update")
            let again = try await TestWebSocket.connect(to: try consoleAddress(cluster, 0))
            #expect(again.mode == "update")
            try await again.send(binary: [0, 1, 2])
            #expect(try await again.receive() == .binary([0, 1, 2]))
            try await expectOpen(cluster, 0, 1)
            await again.close()
        }
    }
}
