import Foundation
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// Sent down a connection's pipeline when its server goes down.
struct GoingDownEvent: Sendable {}

/// Serves one HTTP/1.1 connection: hands each request to a responder off-loop and writes the JSON answer.
final class HTTPConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// The handler's name in the pipeline, so that a WebSocket upgrade can remove it.
    static let name = "sim-http"
    private static let maximumBodyBytes = 1 << 20
    private let responder: HTTPResponder
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    // True from a request's head until its response is written.
    private var busy = false
    private var goingDown = false

    init(responder: @escaping HTTPResponder) {
        self.responder = responder
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            self.body = nil
            busy = true
        case .body(var chunk):
            if (body?.readableBytes ?? 0) + chunk.readableBytes > Self.maximumBodyBytes {
                context.close(promise: nil)
                return
            }
            if body == nil { body = chunk } else { body!.writeBuffer(&chunk) }
        case .end:
            guard let head else { return }
            self.head = nil
            answer(head: head, body: body, context: context)
            body = nil
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is GoingDownEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        goingDown = true
        // An idle keep-alive connection closes at once; a busy one after its response.
        if !busy { context.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A refused or malformed WebSocket upgrade is answered as the plain request it then is.
        if error is NIOWebSocketUpgradeError { return }
        context.close(promise: nil)
    }

    private func answer(head: HTTPRequestHead, body: ByteBuffer?, context: ChannelHandlerContext) {
        let request = SimHTTPRequest(head: head, body: body)
        let responder = self.responder
        let promise = context.eventLoop.makePromise(of: SimHTTPResponse.self)
        promise.completeWithTask { await responder(request) }
        promise.futureResult.assumeIsolated().whenComplete { result in
            let response: SimHTTPResponse
            switch result {
            case .success(let value): response = value
            case .failure: response = .error(.internalServerError, "internal error")
            }
            self.write(response, for: head, context: context)
        }
    }

    private func write(_ response: SimHTTPResponse, for request: HTTPRequestHead, context: ChannelHandlerContext) {
        let keepAlive = request.isKeepAlive && !goingDown
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(response.body.count))
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        // As every real server does: the balancer's update plan compares clocks by it.
        headers.add(name: "Date", value: (response.date ?? Date()).httpDate)
        let head = HTTPResponseHead(version: request.version, status: response.status, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(
            wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: response.body)))),
            promise: nil)
        // Cleared before `.end`: the pipelining handler may deliver the next request from inside that write.
        busy = false
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
        if !keepAlive {
            written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }
}

@available(*, unavailable)
extension HTTPConnectionHandler: Sendable {}
