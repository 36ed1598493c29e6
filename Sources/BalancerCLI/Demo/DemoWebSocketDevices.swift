import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// Long-lived IGEL OS 12 devices in the demo: each holds one WebSocket to
/// `/device-connector/device/ws-connect` through the balancer, sends a numbered message now and
/// then and waits for its echo. When its WebSocket ends (a server going down for its install says
/// 1001 going away; the balancer ends it at the drain timeout before a reconnect), the device
/// reconnects and sends the unanswered message again. A message is lost for good when it never
/// gets its echo.
final class DemoWebSocketDevices: Sendable {
    /// What the WebSocket devices experienced.
    struct Counts: Sendable {
        /// WebSockets open now, per node.
        var openByNode: [String: Int] = [:]
        /// WebSockets opened in all.
        var connects = 0
        /// WebSockets opened again after a device's previous one ended.
        var reconnects = 0
        /// WebSockets a server closed with a close frame (1001 when it went down).
        var closedByServer = 0
        /// WebSockets that ended without a close frame (the balancer's drain, a reset).
        var dropped = 0
        /// Connects that failed (the device tried again).
        var connectFailures = 0
        /// Distinct messages sent (a resend counts once) and echoes received.
        var sent = 0
        var echoed = 0

        var open: Int { openByNode.values.reduce(0, +) }
        /// Messages sent that never got their echo.
        var lost: Int { sent - echoed }
    }

    private enum Upgrade: Sendable {
        case upgraded(NIOAsyncChannel<WebSocketFrame, WebSocketFrame>, node: String)
        case refused(any Channel)
    }

    private enum End {
        case closedByServer, dropped, stopped
    }

    private let address: SocketAddress
    private let devices: Int
    private let period: Duration
    private let group: any EventLoopGroup
    private let state = NIOLockedValueBox(Counts())
    private let running = NIOLockedValueBox(true)
    private let tasks = NIOLockedValueBox<[Task<Void, Never>]>([])

    init(address: SocketAddress, devices: Int, speed: Double, group: any EventLoopGroup) {
        self.address = address
        self.devices = devices
        self.period = .milliseconds(Int64(500 / speed))
        self.group = group
    }

    var counts: Counts { state.withLockedValue { $0 } }

    func start() {
        tasks.withLockedValue { $0 = (0..<devices).map { number in Task { await self.device(number) } } }
    }

    /// Stops the devices: each waits for the echo of its message in flight (resending after a
    /// reconnect if needed, for at most `grace`), then closes its WebSocket.
    func stop(grace: Duration = .seconds(10)) async -> Counts {
        running.withLockedValue { $0 = false }
        let all = tasks.withLockedValue { $0 }
        let watchdog = Task {
            try? await Task.sleep(for: grace)
            for task in all { task.cancel() }
        }
        for task in all { await task.value }
        watchdog.cancel()
        return counts
    }

    private var isRunning: Bool { running.withLockedValue { $0 } }

    private func device(_ number: Int) async {
        var sequence = 0
        var pending: String?
        var connectedBefore = false
        // Bounded: a device gives up after 100,000 connects, or when cancelled.
        for _ in 0..<100_000 {
            if Task.isCancelled || (!isRunning && pending == nil) { return }
            let socket: NIOAsyncChannel<WebSocketFrame, WebSocketFrame>
            let node: String
            do {
                (socket, node) = try await connect()
            } catch {
                state.withLockedValue { $0.connectFailures += 1 }
                try? await Task.sleep(for: .milliseconds(100))
                continue
            }
            state.withLockedValue {
                $0.connects += 1
                if connectedBefore { $0.reconnects += 1 }
                $0.openByNode[node, default: 0] += 1
            }
            connectedBefore = true
            let end: End
            do {
                end = try await socket.executeThenClose { inbound, outbound in
                    await self.converse(on: socket.channel, inbound, outbound, pending: &pending) {
                        sequence += 1
                        return "device \(number + 1) message \(sequence)"
                    }
                }
            } catch {
                end = .dropped
            }
            state.withLockedValue {
                $0.openByNode[node, default: 1] -= 1
                if $0.openByNode[node] == 0 { $0.openByNode[node] = nil }
                if end == .closedByServer { $0.closedByServer += 1 }
                if end == .dropped { $0.dropped += 1 }
            }
        }
    }

    /// Sends messages on one WebSocket until it ends or the devices stop: each waits for its echo
    /// (`pending` until then, so that a reconnect resends it), then a pause.
    private func converse(
        on channel: any Channel, _ inbound: NIOAsyncChannelInboundStream<WebSocketFrame>,
        _ outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>, pending: inout String?,
        next: () -> String
    ) async -> End {
        var iterator = inbound.makeAsyncIterator()
        while !Task.isCancelled {
            if pending == nil {
                guard isRunning else { break }
                pending = next()
                state.withLockedValue { $0.sent += 1 }
            }
            guard let message = pending else { break }
            // An echo that does not come within 10 s ends the connection: the device reconnects.
            let timeout = channel.eventLoop.scheduleTask(in: .seconds(10)) { channel.close(promise: nil) }
            defer { timeout.cancel() }
            var echoed = false
            do {
                try await outbound.write(Self.frame(.text, ByteBuffer(string: message)))
                echo: while let frame = try await iterator.next() {
                    switch frame.opcode {
                    case .text where String(buffer: frame.unmaskedData) == message:
                        echoed = true
                        break echo
                    case .ping:
                        try await outbound.write(Self.frame(.pong, frame.unmaskedData))
                    case .connectionClose:
                        // Answer the close (with its code), as RFC 6455 asks, then reconnect.
                        var data = frame.unmaskedData
                        let code = data.readSlice(length: min(2, data.readableBytes)) ?? ByteBuffer()
                        try? await outbound.write(Self.frame(.connectionClose, code))
                        return .closedByServer
                    default:
                        continue
                    }
                }
            } catch {
                return .dropped
            }
            guard echoed else { return .dropped }
            pending = nil
            state.withLockedValue { $0.echoed += 1 }
            try? await Task.sleep(for: period)
        }
        try? await outbound.write(Self.frame(.connectionClose, Self.closeCode(1000)))
        return .stopped
    }

    private func connect() async throws -> (NIOAsyncChannel<WebSocketFrame, WebSocketFrame>, String) {
        let upgrade = try await ClientBootstrap(group: group)
            .connectTimeout(.seconds(3))
            .connect(to: address) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let upgrader = NIOTypedWebSocketClientUpgrader<Upgrade>(upgradePipelineHandler: { channel, head in
                        channel.eventLoop.makeCompletedFuture {
                            .upgraded(
                                try NIOAsyncChannel(wrappingChannelSynchronously: channel),
                                node: head.headers.first(name: "X-UMS-Node") ?? "?")
                        }
                    })
                    var head = HTTPRequestHead(
                        version: .http1_1, method: .GET, uri: "/device-connector/device/ws-connect")
                    head.headers.add(name: "Host", value: "ums")
                    head.headers.add(name: "Content-Length", value: "0")
                    var configuration = NIOUpgradableHTTPClientPipelineConfiguration(
                        upgradeConfiguration: NIOTypedHTTPClientUpgradeConfiguration(
                            upgradeRequestHead: head, upgraders: [upgrader],
                            notUpgradingCompletionHandler: { channel in
                                channel.eventLoop.makeSucceededFuture(.refused(channel))
                            }))
                    configuration.leftOverBytesStrategy = .forwardBytes
                    let upgraded = try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
                        configuration: configuration)
                    let deadline = channel.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
                    upgraded.whenComplete { _ in deadline.cancel() }
                    return upgraded
                }
            }
        switch try await upgrade.get() {
        case .upgraded(let socket, let node):
            return (socket, node)
        case .refused(let channel):
            try? await channel.close()
            throw DemoError("the WebSocket upgrade was refused")
        }
    }

    private static func frame(_ opcode: WebSocketOpcode, _ data: ByteBuffer) -> WebSocketFrame {
        // Client frames are masked (RFC 6455, 5.3).
        WebSocketFrame(fin: true, opcode: opcode, maskKey: .random(), data: data)
    }

    private static func closeCode(_ code: UInt16) -> ByteBuffer {
        var data = ByteBuffer()
        data.writeInteger(code)
        return data
    }
}
