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
    /// After an answer that ends the connection: the client's bytes are read and dropped until it
    /// closes, so what it still sends (the rest of a head too large) does not reset the connection
    /// under the answer before the client read it.
    private var lingering = false
    private var lingerDeadline: Scheduled<Void>?

    /// How long a closing connection reads and drops what the client still sends.
    static let lingerLimit = TimeAmount.seconds(2)
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

    /// Closes the connection once every byte written so far has left; with `linger`, first stops
    /// writing (TLS close_notify), then drops what the client still sends until it closes, for at
    /// most `lingerLimit`.
    func closeWhenFlushed(linger: Bool = false) {
        guard let context, context.channel.isActive else {
            self.context?.close(promise: nil)
            return
        }
        // What this handler joined goes first (a write from its own context would pass it by).
        writePending(context: context)
        // Writes complete in order: an empty write's promise fires once everything before it is out.
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(NIOAny(IOData.byteBuffer(ByteBuffer())), promise: promise)
        guard linger else {
            promise.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            return
        }
        lingering = true
        promise.futureResult.assumeIsolated().whenComplete { _ in
            context.close(mode: .output, promise: nil)
            self.lingerDeadline = context.eventLoop.assumeIsolated().scheduleTask(in: Self.lingerLimit) {
                context.close(promise: nil)
            }
            context.read()
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        connection.start()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !lingering else {
            context.read()
            return
        }
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
            if lingering {
                context.close(promise: nil)
                return
            }
            // The client sent its EOF (or TLS close_notify): the decoders and a tunnel hear it too.
            context.fireUserInboundEventTriggered(event)
            connection.inputClosed()
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if lingering {
            context.close(promise: nil)
            return
        }
        connection.failed(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        lingerDeadline?.cancel()
        lingerDeadline = nil
        connection.closed()
        context.fireChannelInactive()
    }
}

@available(*, unavailable)
extension ClientWire: Sendable {}
