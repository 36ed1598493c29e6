import BalancerCore
import NIOCore
import NIOHTTP1

/// The last handler of a `by-path` client connection speaking HTTP/1.1 (after TLS and the
/// server codec), or of one HTTP/2 stream (after the stream's HTTP/1 codec). Each request head
/// starts a `NodeExchange`; this handler writes back what the exchange answers. Reads only while
/// the request's node can take more; a pipelined request waits until the one before is
/// answered. It makes no decision of its own: the connection's machine and the policies do.
final class ClientHTTPHandler {
    private let connection: PathConnection
    /// The HTTP/2 stream, or nil on an HTTP/1.1 connection.
    let stream: Int?
    private var context: ChannelHandlerContext?
    private var channel: (any Channel)?
    private var exchange: NodeExchange?
    /// Parts of the next request, read while the one before is still being answered.
    private var queued = CircularBuffer<HTTPServerRequestPart>()
    private var pendingRead = false
    private var closing = false
    private var clientVersion = HTTPVersionNumber.http1_1

    init(connection: PathConnection, stream: Int? = nil) {
        self.connection = connection
        self.stream = stream
    }

    var isWritable: Bool { channel?.isWritable ?? false }

    /// Between a read and its read-complete: what is written toward the node now is flushed then.
    private(set) var isReading = false

    // MARK: - What the exchange asks

    func write(_ part: HTTPServerResponsePart) {
        context?.write(NIOAny(part), promise: nil)
    }

    func flush() {
        context?.flush()
    }

    /// A read waiting for the request's node (or the end of the answer before) goes ahead.
    func resumeReading() {
        guard pendingRead, wantsRead, let context else { return }
        pendingRead = false
        context.read()
    }

    /// The balancer's own answer in place of a node's; `keepAlive`: the connection stays open after it.
    func writeAnswer(_ answer: BalancerAnswer, keepAlive: Bool) {
        var headers = HTTPHeaders()
        let body = answer.text + "\n"
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        if let retryAfter = answer.retryAfter { headers.add(name: "Retry-After", value: String(retryAfter)) }
        if stream == nil, !keepAlive { headers.add(name: "Connection", value: "close") }
        let version = HTTPVersion(major: clientVersion.major, minor: clientVersion.minor)
        let head = HTTPResponseHead(
            version: version, status: HTTPResponseStatus(statusCode: answer.status), headers: headers)
        write(.head(head))
        write(.body(.byteBuffer(ByteBuffer(string: body))))
        write(.end(nil))
        flush()
    }

    /// The answer cannot be completed (the node failed in mid-answer): the client must see it broken.
    func abort() {
        closing = true
        if stream == nil {
            connection.close()
        } else {
            context?.close(promise: nil)
        }
    }

    /// Closes the connection (an HTTP/2 stream: the stream) once what was written is out;
    /// `linger`: the client may still be sending (an answer to a request broken off).
    func closeAfterFlush(linger: Bool = false) {
        closing = true
        if stream == nil {
            connection.closeWhenFlushed(linger: linger)
        } else {
            context?.flush()
            context?.close(promise: nil)
        }
    }

    /// The request in flight is over; `keepAlive`: the client may send another on this connection.
    func exchangeFinished(keepAlive: Bool) {
        exchange = nil
        // An HTTP/2 stream ends with its answer; the connection goes on.
        guard stream == nil else {
            connection.streamFinished()
            return
        }
        switch connection.requestFinished(keepAlive: keepAlive) {
        case .readNext:
            while !queued.isEmpty, exchange?.takesClientParts ?? true, !closing {
                handle(queued.removeFirst())
            }
            resumeReading()
        case .close, .answerAndClose:
            closeAfterFlush()
        case .none:
            break
        }
    }

    /// The node switched protocols: the HTTP handlers leave this connection to `tunnel`.
    func becomeTunnel(_ tunnel: Tunnel) {
        guard let context else {
            tunnel.close()
            return
        }
        context.flush()
        let pipeline = context.pipeline.syncOperations
        do {
            try tunnel.attach(.client, to: pipeline)
            // This handler leaves before the decoder, which forwards what it holds beyond the request.
            pipeline.removeHandler(context: context, promise: nil)
            HTTPHandlers.removeServerCodec(from: pipeline).assumeIsolated().whenComplete { result in
                tunnel.codecRemoved(from: .client, result)
            }
        } catch {
            tunnel.close()
        }
    }

    // MARK: - Requests

    private var wantsRead: Bool {
        guard !closing, queued.isEmpty else { return false }
        guard let exchange else { return true }
        // A whole request read and its answer awaited: reading on is fine (a pipelined request
        // fills the queue, which stops reads), and it spares the socket's read interest being
        // dropped and taken up again, two epoll_ctl calls per request.
        if !exchange.takesClientParts { return true }
        return exchange.wantsClientBytes
    }

    private func handle(_ part: HTTPServerRequestPart) {
        switch part {
        case .head(let head):
            begin(head)
        case .body(let buffer):
            exchange?.clientBody(buffer)
        case .end(let trailers):
            exchange?.clientEnd(trailers)
        }
    }

    private func begin(_ head: HTTPRequestHead) {
        switch connection.requestStarted(headerCount: head.headers.count) {
        case .serve(let last):
            let headers = head.headers
            let facts = RequestFacts(
                method: head.method.rawValue, target: head.uri,
                version: stream == nil
                    ? HTTPVersionNumber(major: head.version.major, minor: head.version.minor) : .http1_1,
                connection: headers["connection"],
                upgrade: headers.contains(name: "upgrade"),
                contentLength: headers.contains(name: "content-length"),
                chunked: headers["transfer-encoding"].last.map(TransferCoding.endsChunked) ?? false,
                headerCount: headers.count, overHTTP2: stream != nil)
            let forwarding = RequestPolicy.forwarding(
                facts, client: connection.identity, rules: connection.rules, lastRequest: last)
            clientVersion = facts.version
            connection.classified(forwarding, method: facts.method)
            let exchange = NodeExchange(
                connection: connection, client: self, head: head, forwarding: forwarding,
                clientVersion: stream == nil ? facts.version : nil)
            exchange.stream = stream
            self.exchange = exchange
            connection.exchangeStarted(exchange)
            exchange.start()
        case .refuse(let answer, _), .reject(let answer, _):
            closing = true
            connection.requestRefused(method: head.method.rawValue, target: head.uri, answer: answer, stream: stream)
            writeAnswer(answer, keepAlive: false)
            if stream == nil {
                closeAfterFlush(linger: true)
            } else {
                // The stream ends with the answer; the connection closes gracefully after its other streams.
                connection.goAway()
            }
        }
    }
}

@available(*, unavailable)
extension ClientHTTPHandler: Sendable {}

// MARK: - Channel events

extension ClientHTTPHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.channel = context.channel
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        isReading = true
        let part = unwrapInboundIn(data)
        if let exchange, !exchange.takesClientParts {
            queued.append(part)
        } else if exchange == nil, !queued.isEmpty {
            queued.append(part)
        } else {
            handle(part)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        isReading = false
        exchange?.clientReadComplete()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { exchange?.clientWritable() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        let exchange = self.exchange
        self.exchange = nil
        exchange?.clientClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let error = error as? HTTPParserError else {
            if stream != nil {
                context.close(promise: nil)
            } else {
                connection.failed(error)
            }
            return
        }
        guard !closing else { return }
        closing = true
        let action =
            if case .headerOverflow = error {
                connection.headTooLarge()
            } else {
                connection.malformed("\(error)")
            }
        if case .answerAndClose(let answer, _) = action, exchange == nil {
            writeAnswer(answer, keepAlive: false)
        }
        closeAfterFlush(linger: true)
    }

    func read(context: ChannelHandlerContext) {
        if wantsRead {
            context.read()
        } else {
            pendingRead = true
        }
    }
}
