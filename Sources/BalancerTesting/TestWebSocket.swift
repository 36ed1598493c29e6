import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket

/// A WebSocket client for tests (RFC 6455, with NIOWebSocket's client upgrader), as an IGEL OS 12
/// device opens `/device-connector/device/ws-connect`: over plain TCP, or over TLS with a server
/// name and, with a context that has one, a client certificate. Used by one task at a time.
public final class TestWebSocket {
    /// The path IGEL OS 12 devices open their WebSocket on.
    public static let deviceConnectPath = "/device-connector/device/ws-connect"

    /// One message (or control frame) from the server.
    public enum Message: Sendable, Equatable {
        case text(String)
        case binary([UInt8])
        case pong([UInt8])
        /// A close frame: its status code (nil when it had none) and reason.
        case close(code: UInt16?, reason: String)
    }

    /// The server answered the upgrade request without switching protocols.
    public struct NotUpgraded: Error, CustomStringConvertible {
        /// The answer's status code.
        public var status: Int
        /// The answer's body, as text.
        public var body: String
        public var description: String { "no WebSocket: HTTP \(status) \(body.prefix(200))" }
    }

    /// Nothing came within the time asked for; the connection was closed.
    public struct TimedOut: Error {}

    typealias FrameChannel = NIOAsyncChannel<WebSocketFrame, WebSocketFrame>
    typealias HTTPChannel = NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>

    enum Upgrade: Sendable {
        case upgraded(FrameChannel, HTTPResponseHead)
        case notUpgraded(HTTPChannel)
    }

    /// The headers of the `101 Switching Protocols` answer, names lowercased. The simulated
    /// node names itself (`x-ums-node`), its mode (`x-ums-mode`) and the client certificate it
    /// saw in `X-SSL-CERT` (`x-ums-client-cert`).
    public let answerHeaders: [String: String]
    /// The node that accepted the WebSocket, as it says.
    public var node: String? { answerHeaders["x-ums-node"] }
    /// The node's mode when it accepted the WebSocket.
    public var mode: String? { answerHeaders["x-ums-mode"] }
    /// The subject of the client certificate the node saw, if any.
    public var clientCertificate: String? { answerHeaders["x-ums-client-cert"] }

    private let channel: FrameChannel
    private var inbound: NIOAsyncChannelInboundStream<WebSocketFrame>.AsyncIterator
    private var closeSent = false

    private init(channel: FrameChannel, head: HTTPResponseHead) {
        self.channel = channel
        self.inbound = channel.inbound.makeAsyncIterator()
        var headers: [String: String] = [:]
        for (name, value) in head.headers { headers[name.lowercased()] = value }
        self.answerHeaders = headers
    }

    /// Opens a WebSocket on `path` at `address`; with `tls`, inside a TLS connection sending
    /// `serverName` (nil: no SNI). `preamble` goes first on the wire (a PROXY header).
    /// Throws `NotUpgraded` with the server's answer when it does not switch protocols.
    public static func connect(
        to address: SocketAddress, path: String = deviceConnectPath, tls: NIOSSLContext? = nil,
        serverName: String? = "ums.example.com", preamble: [UInt8] = [], headers: [(String, String)] = [],
        timeout: Duration = .seconds(10)
    ) async throws -> TestWebSocket {
        let upgrade = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(TimeAmount(timeout))
            .connect(to: address) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if !preamble.isEmpty { try sync.addHandler(ConnectionPreamble(preamble)) }
                    if let tls { try sync.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverName)) }
                    var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path)
                    head.headers.add(name: "Host", value: serverName ?? "ums")
                    head.headers.add(name: "Content-Length", value: "0")
                    for (name, value) in headers { head.headers.add(name: name, value: value) }
                    let upgraded = try sync.configureUpgradableHTTPClientPipeline(
                        configuration: pipelineConfiguration(head))
                    // A server that never answers the upgrade ends the attempt after `timeout`.
                    let deadline = channel.eventLoop.scheduleTask(in: TimeAmount(timeout)) {
                        channel.close(promise: nil)
                    }
                    upgraded.whenComplete { _ in deadline.cancel() }
                    return upgraded
                }
            }
        let result = try await upgrade.get()
        switch result {
        case .upgraded(let channel, let head):
            return TestWebSocket(channel: channel, head: head)
        case .notUpgraded(let channel):
            throw try await refusal(channel)
        }
    }

    private static func pipelineConfiguration(_ head: HTTPRequestHead) -> NIOUpgradableHTTPClientPipelineConfiguration<
        Upgrade
    > {
        let upgrader = NIOTypedWebSocketClientUpgrader<Upgrade>(
            maxFrameSize: 1 << 20,
            upgradePipelineHandler: { channel, answer in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        NIOWebSocketFrameAggregator(
                            minNonFinalFragmentSize: 1, maxAccumulatedFrameCount: 256, maxAccumulatedFrameSize: 1 << 22
                        ))
                    return .upgraded(try FrameChannel(wrappingChannelSynchronously: channel), answer)
                }
            })
        var configuration = NIOUpgradableHTTPClientPipelineConfiguration(
            upgradeConfiguration: NIOTypedHTTPClientUpgradeConfiguration(
                upgradeRequestHead: head, upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        .notUpgraded(try HTTPChannel(wrappingChannelSynchronously: channel))
                    }
                }))
        // A frame that arrives with the 101 (a close at once) must not be lost with the HTTP decoder.
        configuration.leftOverBytesStrategy = .forwardBytes
        return configuration
    }

    /// Reads the answer that refused the upgrade (bounded), and closes the connection.
    private static func refusal(_ channel: HTTPChannel) async throws -> NotUpgraded {
        try await channel.executeThenClose { inbound, _ in
            var refusal = NotUpgraded(status: 0, body: "")
            for try await part in inbound {
                switch part {
                case .head(let head): refusal.status = Int(head.status.code)
                case .body(let chunk): refusal.body += String(buffer: chunk)
                case .end: return refusal
                }
                if refusal.body.utf8.count > 64 * 1024 { break }
            }
            return refusal
        }
    }

    // MARK: - Messages

    /// Sends a text message.
    public func send(_ text: String) async throws {
        try await write(.text, ByteBuffer(string: text))
    }

    /// Sends a binary message.
    public func send(binary: [UInt8]) async throws {
        try await write(.binary, ByteBuffer(bytes: binary))
    }

    /// Sends a ping carrying `data` (at most 125 bytes).
    public func ping(_ data: [UInt8]) async throws {
        try await write(.ping, ByteBuffer(bytes: data))
    }

    /// The next message or control frame from the server; nil when the connection ended without a
    /// close frame. Pings are answered on the way. Throws `TimedOut` (and closes) after `timeout`.
    public func receive(timeout: Duration = .seconds(10)) async throws -> Message? {
        let timedOut = NIOLockedValueBox(false)
        let channel = self.channel.channel
        let timer = channel.eventLoop.scheduleTask(in: TimeAmount(timeout)) {
            timedOut.withLockedValue { $0 = true }
            channel.close(promise: nil)
        }
        defer { timer.cancel() }
        while true {
            let frame: WebSocketFrame?
            do {
                frame = try await inbound.next()
            } catch {
                if timedOut.withLockedValue({ $0 }) { throw TimedOut() }
                throw error
            }
            guard let frame else {
                if timedOut.withLockedValue({ $0 }) { throw TimedOut() }
                return nil
            }
            var data = frame.unmaskedData
            switch frame.opcode {
            case .text: return .text(String(buffer: data))
            case .binary: return .binary(Array(data.readableBytesView))
            case .pong: return .pong(Array(data.readableBytesView))
            case .ping: try await write(.pong, data)
            case .connectionClose:
                let code = data.readInteger(as: UInt16.self)
                let reason = String(buffer: data)
                if !closeSent {
                    // Answer the close with the same code, then end the connection, as RFC 6455 asks.
                    var reply = ByteBuffer()
                    if let code { reply.writeInteger(code) }
                    try? await write(.connectionClose, reply)
                }
                try? await channel.close()
                return .close(code: code, reason: reason)
            default: continue
            }
        }
    }

    /// Closes with a close frame (`code`), waits briefly for the server's close, and ends the connection.
    public func close(code: UInt16 = 1000) async {
        var data = ByteBuffer()
        data.writeInteger(code)
        try? await write(.connectionClose, data)
        closeSent = true
        for _ in 0..<16 {
            guard let message = try? await receive(timeout: .seconds(2)) else { break }
            if case .close = message { break }
        }
        try? await channel.channel.close()
    }

    /// Ends the TCP connection without a close frame, as a device losing its network would.
    public func abort() async {
        try? await channel.channel.close()
    }

    private func write(_ opcode: WebSocketOpcode, _ data: ByteBuffer) async throws {
        // Client frames are masked (RFC 6455, 5.3); the encoder applies the key.
        try await channel.outbound.write(WebSocketFrame(fin: true, opcode: opcode, maskKey: .random(), data: data))
    }
}
