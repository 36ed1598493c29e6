import NIOCore
import NIOWebSocket

/// Counts a node's open WebSockets, as its status JSON's `websockets_open` shows them.
final class WebSocketCounter: Sendable {
    private let count = Locked(0)

    /// The WebSockets open now.
    var open: Int { count.withLock { $0 } }

    func opened() { count.withLock { $0 += 1 } }

    func closed() { count.withLock { $0 -= 1 } }
}

/// One device's WebSocket (`/device-connector/device/ws-connect`): echoes each text and binary
/// message, answers a ping with a pong carrying the same bytes, answers a close with a close, and
/// says goodbye with a close frame 1001 (going away) when its server goes down, so that the
/// device reconnects, through the balancer, to a server still serving.
final class WebSocketEchoHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// How long a close this side sent waits for the peer's close before the TCP connection ends anyway.
    private static let closeHandshakeTimeout = TimeAmount.seconds(1)

    private let counter: WebSocketCounter
    private var counted = false
    private var closeSent = false
    private var closeTimer: Scheduled<Void>?

    init(counter: WebSocketCounter) {
        self.counter = counter
    }

    func handlerAdded(context: ChannelHandlerContext) {
        counter.opened()
        counted = true
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        closeTimer?.cancel()
        if counted { counter.closed() }
        counted = false
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            // After our close, the peer's messages are no longer answered (RFC 6455, 5.5.1).
            guard !closeSent else { return }
            let echo = WebSocketFrame(fin: true, opcode: frame.opcode, data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(echo), promise: nil)
        case .ping:
            guard !closeSent else { return }
            context.writeAndFlush(
                wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .pong:
            break
        case .connectionClose:
            peerClosed(context: context, frame: frame)
        default:
            sendClose(context: context, .protocolError, reason: "unexpected opcode \(frame.opcode)")
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is GoingDownEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        sendClose(context: context, .goingAway, reason: "the server is going down")
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Frame errors (oversized, bad fragments): say so in a close frame, then end the connection.
        sendClose(context: context, .protocolError, reason: "protocol error")
    }

    private func peerClosed(context: ChannelHandlerContext, frame: WebSocketFrame) {
        guard !closeSent else {
            // The answer to our own close: the handshake is complete.
            context.close(promise: nil)
            return
        }
        closeSent = true
        // Echo the peer's status code, as RFC 6455 (5.5.1) asks, then end the connection.
        var data = frame.unmaskedData
        let code = data.readableBytes >= 2 ? data.readSlice(length: 2) : nil
        let reply = WebSocketFrame(
            fin: true, opcode: .connectionClose, data: code ?? context.channel.allocator.buffer(capacity: 0))
        context.writeAndFlush(wrapOutboundOut(reply)).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    private func sendClose(context: ChannelHandlerContext, _ code: WebSocketErrorCode, reason: String) {
        guard !closeSent else { return }
        closeSent = true
        var data = context.channel.allocator.buffer(capacity: 2 + reason.utf8.count)
        data.write(webSocketErrorCode: code)
        data.writeString(reason)
        context.writeAndFlush(
            wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)), promise: nil)
        closeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: Self.closeHandshakeTimeout) {
            context.close(promise: nil)
        }
    }
}

@available(*, unavailable)
extension WebSocketEchoHandler: Sendable {}
