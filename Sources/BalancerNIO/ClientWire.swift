import BalancerCore
import NIOCore
import NIOSSL
import NIOTLS

/// Sits right after TLS on a `by-path` client connection: counts the bytes each way for the
/// access log, tells the connection when a request head begins and when one grows past its
/// limit before the HTTP decoder finishes it, reports the handshake, failures and the close,
/// and closes once everything written is out. It makes no decision of its own.
///
/// Small writes between two flushes (an answer's head, its body, its end) are joined into one
/// buffer, so TLS seals them in one record instead of one each.
final class ClientWire: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    private let connection: PathConnection
    private var context: ChannelHandlerContext?
    /// Writes joined since the last flush, and the promises waiting on them.
    private var pending: ByteBuffer?
    private var pendingPromises: [EventLoopPromise<Void>] = []

    /// The most bytes joined into one write: a TLS record's payload.
    static let joinLimit = 16 * 1024

    init(connection: PathConnection) {
        self.connection = connection
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// Closes the connection once every byte written so far has left.
    func closeWhenFlushed() {
        guard let context, context.channel.isActive else {
            self.context?.close(promise: nil)
            return
        }
        // What this handler joined goes first (a write from its own context would pass it by).
        writePending(context: context)
        // Writes complete in order: an empty write's promise fires once everything before it is out.
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(NIOAny(IOData.byteBuffer(ByteBuffer())), promise: promise)
        promise.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    func channelActive(context: ChannelHandlerContext) {
        connection.start()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.bytesRead(unwrapInboundIn(data).readableBytes)
        context.fireChannelRead(data)
        connection.readDecoded()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .byteBuffer(var buffer) = unwrapOutboundIn(data) else {
            writePending(context: context)
            context.write(data, promise: promise)
            return
        }
        connection.bytesWritten(buffer.readableBytes)
        guard buffer.readableBytes + (pending?.readableBytes ?? 0) <= Self.joinLimit else {
            writePending(context: context)
            context.write(data, promise: promise)
            return
        }
        if pending == nil {
            pending = buffer
        } else {
            pending!.writeBuffer(&buffer)
        }
        if let promise { pendingPromises.append(promise) }
    }

    func flush(context: ChannelHandlerContext) {
        writePending(context: context)
        context.flush()
    }

    private func writePending(context: ChannelHandlerContext) {
        guard let buffer = pending else { return }
        pending = nil
        var promise: EventLoopPromise<Void>?
        if !pendingPromises.isEmpty {
            let waiting = pendingPromises
            pendingPromises = []
            promise = context.eventLoop.makePromise()
            promise!.futureResult.assumeIsolated().whenComplete { result in
                for each in waiting { each.completeWith(result) }
            }
        }
        context.write(wrapOutboundOut(.byteBuffer(buffer)), promise: promise)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent {
            connection.handshakeCompleted(certificate: try? context.pipeline.syncOperations.nioSSL_peerCertificate())
        } else if let event = event as? ChannelEvent, event == .inputClosed {
            // The client sent its EOF (or TLS close_notify): the decoders and a tunnel hear it too.
            context.fireUserInboundEventTriggered(event)
            connection.inputClosed()
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        connection.failed(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.closed()
        context.fireChannelInactive()
    }
}

@available(*, unavailable)
extension ClientWire: Sendable {}
