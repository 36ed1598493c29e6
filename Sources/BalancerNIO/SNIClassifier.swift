import BalancerCore
import NIOCore

/// Tells the proxy handler which class a connection is, with the bytes read to find out.
struct ConnectionClassified {
    var trafficClass: TrafficClass
    var detail: String
    var bytes: ByteBuffer
}

/// Reads a TLS ClientHello without consuming it: the bytes are kept and handed on untouched, so
/// the node completes the handshake with the client as if nothing were in between. A malformed,
/// oversized or too slow ClientHello closes the connection and is counted.
final class SNIClassifier: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let rules: SNIRules
    private let timeout: TimeAmount
    private let record: ConnectionRecord
    private let listener: String
    private var buffered = ByteBuffer()
    private var deadline: Scheduled<Void>?

    init(rules: SNIRules, timeout: Duration, record: ConnectionRecord, listener: String) {
        self.rules = rules
        self.timeout = TimeAmount(timeout)
        self.record = record
        self.listener = listener
    }

    func channelActive(context: ChannelHandlerContext) {
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            self.reject(context: context, reason: "timeout", detail: "no complete ClientHello within \(self.timeout)")
        }
        context.fireChannelActive()
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var chunk = unwrapInboundIn(data)
        buffered.writeBuffer(&chunk)
        switch ClientHello.parse(buffered.readableBytesView) {
        case .needMoreData:
            context.read()
        case .invalid(let why):
            reject(context: context, reason: why.handshakeFailure.label, detail: why.description)
        case .complete(let serverName):
            deadline?.cancel()
            let trafficClass = rules.classify(serverName)
            let event = ConnectionClassified(
                trafficClass: trafficClass, detail: "sni=\(serverName ?? "-")", bytes: buffered)
            buffered = ByteBuffer()
            context.fireUserInboundEventTriggered(event)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        context.fireChannelInactive()
    }

    private func reject(context: ChannelHandlerContext, reason: String, detail: String) {
        deadline?.cancel()
        guard context.channel.isActive else { return }
        record.handshakeFailed(listener: listener, reason: reason, detail: detail)
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension SNIClassifier: Sendable {}
