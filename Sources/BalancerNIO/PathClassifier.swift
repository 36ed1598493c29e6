import BalancerCore
import NIOCore
import NIOSSL
import NIOTLS

/// Reads the first HTTP request head of a TLS-terminated connection, classifies it by path and
/// hands the rewritten head (client certificate in `X-SSL-CERT`, any forged one removed), plus
/// whatever followed it, to the proxy handler. A failed handshake, or a head that is malformed,
/// oversized or too slow, closes the connection and is counted; other connections never notice.
final class PathClassifier: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let rules: PathRules
    private let timeout: TimeAmount
    private let record: ConnectionRecord
    private let listener: String
    private var buffered = ByteBuffer()
    private var deadline: Scheduled<Void>?
    private var handshakeDone = false
    private var finished = false

    init(rules: PathRules, timeout: Duration, record: ConnectionRecord, listener: String) {
        self.rules = rules
        self.timeout = TimeAmount(timeout)
        self.record = record
        self.listener = listener
    }

    func channelActive(context: ChannelHandlerContext) {
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            let what = self.handshakeDone ? "request head" : "TLS handshake and request head"
            self.reject(
                context: context, outcome: "handshake-failed", reason: "timeout",
                detail: "no complete \(what) within \(self.timeout)")
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
        case .invalid(let why):
            reject(
                context: context, outcome: "bad-request", reason: why.contains("larger") ? "oversized" : "malformed",
                detail: why, answer: why.contains("larger") ? "431 Request Header Fields Too Large" : "400 Bad Request")
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
        let text = "\(error)"
        let reason =
            if text.contains("HTTP_REQUEST") || text.contains("WRONG_VERSION_NUMBER") {
                "not-tls"
            } else if text.contains("CERTIFICATE") || text.contains("CERT") {
                "client-certificate"
            } else {
                "tls-handshake"
            }
        reject(context: context, outcome: "handshake-failed", reason: reason, detail: "TLS handshake failed: \(text)")
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
        var bytes = ByteBuffer(bytes: head.forwarded(clientCertificatePEM: pem).bytes)
        buffered.moveReaderIndex(forwardBy: length)
        bytes.writeBuffer(&buffered)
        buffered = ByteBuffer()
        let trafficClass = rules.classify(target: head.target)
        let path = PathRules.path(of: head.target) ?? head.target
        let event = ConnectionClassified(
            trafficClass: trafficClass,
            detail: "\(head.method) \(path.prefix(200))\(certificate == nil ? "" : " client-cert")",
            bytes: bytes)
        context.fireUserInboundEventTriggered(event)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private func reject(
        context: ChannelHandlerContext, outcome: String, reason: String, detail: String, answer: String? = nil
    ) {
        deadline?.cancel()
        finished = true
        guard context.channel.isActive else { return }
        record.handshakeFailed(listener: listener, reason: reason, detail: detail, outcome: outcome)
        if let answer, handshakeDone {
            let body = "\(answer.dropFirst(4))\n"
            let response =
                "HTTP/1.1 \(answer)\r\nConnection: close\r\nContent-Type: text/plain\r\n"
                + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: response))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        } else {
            context.close(promise: nil)
        }
    }
}

@available(*, unavailable)
extension PathClassifier: Sendable {}
