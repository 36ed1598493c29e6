import BalancerCore
import BalancerDataPath
import NIOCore
import NIOSSL
import NIOTLS

/// Tells the connection's relay which class a connection is, with the bytes read to find out.
struct ConnectionClassified {
    var trafficClass: TrafficClass
    var detail: String
    var bytes: ByteBuffer
    /// Whether the client presented a certificate, on a listener that asks for one (else nil).
    var clientCertificate: Bool? = nil
}

/// Tells the connection's relay that classifying failed, and what the client should read first.
struct ConnectionClassificationFailed {
    var end: ConnectionEnd
    /// An HTTP answer (400, 431) to write before closing.
    var answer: ByteBuffer?
}

/// Reads the first HTTP request head of a TLS-terminated connection, classifies it by path and
/// hands the rewritten head (client certificate in `X-SSL-CERT`, any forged one removed), plus
/// whatever followed it, to the connection's relay. A failed handshake, or a head that is
/// malformed, oversized or too slow, ends the connection with its reason; other connections never notice.
final class PathClassifier: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let rules: PathRules
    private let timeout: Duration
    private var buffered = ByteBuffer()
    private var deadline: Scheduled<Void>?
    private var handshakeDone = false
    private var finished = false

    /// The client's address for `X-Forwarded-For` (nil: none is added).
    private let client: ClientAddress?
    /// The listener asks clients for a certificate (`client_ca`), so the log says whether one came.
    private let asksForCertificate: Bool

    init(rules: PathRules, timeout: Duration, client: ClientAddress? = nil, asksForCertificate: Bool = false) {
        self.rules = rules
        self.timeout = timeout
        self.client = client
        self.asksForCertificate = asksForCertificate
    }

    func channelActive(context: ChannelHandlerContext) {
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) {
            let what = self.handshakeDone ? "request head" : "TLS handshake and request head"
            self.reject(
                context: context,
                ConnectionEnd(.handshakeFailed, .handshake(.timeout(what: what, limit: self.timeout))))
        }
        context.fireChannelActive()
        context.read()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent { handshakeDone = true }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !finished else { return }
        var chunk = unwrapInboundIn(data)
        buffered.writeBuffer(&chunk)
        switch RequestHead.parse(buffered.readableBytesView) {
        case .needMoreData:
            context.read()
        case .invalid(let problem):
            let failure: HandshakeFailure =
                switch problem {
                case .oversized: .oversized(problem.description)
                case .notHTTP, .malformed: .malformed(problem.description)
                }
            let answer =
                if case .oversized = problem { "431 Request Header Fields Too Large" } else { "400 Bad Request" }
            reject(context: context, ConnectionEnd(.badRequest, .handshake(failure)), answer: answer)
        case .complete(let head, let length):
            classified(context: context, head: head, length: length)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if !finished { context.fireChannelReadComplete() }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !handshakeDone else {
            context.fireErrorCaught(error)
            return
        }
        reject(context: context, ConnectionEnd(.handshakeFailed, .handshake(TLSHandshakeError.failure(error))))
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        context.fireChannelInactive()
    }

    private func classified(context: ChannelHandlerContext, head: RequestHead, length: Int) {
        deadline?.cancel()
        finished = true
        let certificate = try? context.pipeline.syncOperations.nioSSL_peerCertificate()
        let pem = certificate.flatMap { try? PathListenerTLS.pem($0) }
        var bytes = ByteBuffer(bytes: head.forwarded(clientCertificatePEM: pem, forwardedFor: client?.ip).bytes)
        buffered.moveReaderIndex(forwardBy: length)
        bytes.writeBuffer(&buffered)
        buffered = ByteBuffer()
        let trafficClass = rules.classify(target: head.target)
        let path = PathRules.path(of: head.target) ?? head.target
        let event = ConnectionClassified(
            trafficClass: trafficClass,
            detail: "\(head.method) \(path.prefix(200))\(certificate == nil ? "" : " client-cert")",
            bytes: bytes, clientCertificate: asksForCertificate ? certificate != nil : nil)
        context.fireUserInboundEventTriggered(event)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private func reject(context: ChannelHandlerContext, _ end: ConnectionEnd, answer: String? = nil) {
        deadline?.cancel()
        guard !finished else { return }
        finished = true
        var response: ByteBuffer?
        if let answer, handshakeDone {
            let body = "\(answer.dropFirst(4))\n"
            response = ByteBuffer(
                string: "HTTP/1.1 \(answer)\r\nConnection: close\r\nContent-Type: text/plain\r\n"
                    + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
        }
        context.fireUserInboundEventTriggered(ConnectionClassificationFailed(end: end, answer: response))
    }
}

@available(*, unavailable)
extension PathClassifier: Sendable {}
