import BalancerCore
import BalancerStore
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// What every connection of one listener shares.
struct ListenerContext: Sendable {
    var configuration: ListenerConfiguration
    var directory: NodeDirectory
    var timeouts: TimeoutSettings
    var accessLogger: Logger
    var journal: Journal
    var metrics: ListenerMetrics
    /// The TLS contexts of a `by-path` listener.
    var tls: PathListenerTLS? = nil
    /// How this listener connects to nodes, one per event loop: a connection's node channel
    /// shares its client channel's loop, and a bootstrap made per connection costs measurably.
    private(set) var nodeBootstraps: [ObjectIdentifier: LoopBootstrap] = [:]

    // ClientBootstrap is not Sendable; each of these is only used on its own event loop, and
    // connecting reads it without changing it.
    struct LoopBootstrap: @unchecked Sendable {
        var bootstrap: ClientBootstrap
    }

    /// Fills `nodeBootstraps` for every loop of `group`.
    mutating func makeNodeBootstraps(for group: any EventLoopGroup) {
        for eventLoop in group.makeIterator() {
            nodeBootstraps[ObjectIdentifier(eventLoop)] = LoopBootstrap(
                bootstrap: Self.nodeBootstrap(on: eventLoop, timeouts: timeouts, backendTLS: tls?.backend))
        }
    }

    /// The bootstrap for node channels on `eventLoop`.
    func nodeBootstrap(on eventLoop: any EventLoop) -> ClientBootstrap {
        nodeBootstraps[ObjectIdentifier(eventLoop)]?.bootstrap
            ?? Self.nodeBootstrap(on: eventLoop, timeouts: timeouts, backendTLS: tls?.backend)
    }

    private static func nodeBootstrap(
        on eventLoop: any EventLoop, timeouts: TimeoutSettings, backendTLS: NIOSSLContext?
    ) -> ClientBootstrap {
        ClientBootstrap(group: eventLoop)
            .channelInitializer { channel in
                guard let backendTLS else { return channel.eventLoop.makeSucceededVoidFuture() }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        NIOSSLClientHandler(context: backendTLS, serverHostname: nil))
                }
            }
            .connectTimeout(TimeAmount(timeouts.connect))
            // TCP_NODELAY: ClientBootstrap sets it by default.
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelOption(.recvAllocator, value: Balancer.receiveBuffers)
    }
}

/// The first handler of an accepted connection: picks nodes, connects to the first that answers,
/// then glues the two channels together and steps aside. The client's bytes are not read until
/// a node is connected, so a failed connect is retried on the next node without the client
/// noticing anything.
final class ProxyHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let listener: ListenerContext
    private let record: ConnectionRecord
    private var failures: [String] = []
    /// Bytes a classifier read before the node was chosen; the node gets them first.
    private var initialBytes: ByteBuffer?
    /// Bytes the client sent before a node was connected. Reads are off until then, but a client
    /// that sends and half-closes at once has its bytes and EOF delivered anyway (NIO reads to the EOF).
    private var earlyBytes: ByteBuffer?
    private var earlyEndOfInput = false

    init(listener: ListenerContext, record: ConnectionRecord) {
        self.listener = listener
        self.record = record
    }

    func channelActive(context: ChannelHandlerContext) {
        context.channel.closeFuture.assumeIsolated().whenComplete { [record] _ in
            record.log()
        }
        if case .fixed(let trafficClass) = listener.configuration.classification {
            route(context: context, trafficClass: trafficClass, initialBytes: nil)
        }
        // Other listeners wait for a classifier's `ConnectionClassified`.
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if earlyBytes == nil {
            earlyBytes = bytes
        } else {
            earlyBytes!.writeBuffer(&bytes)
        }
        if let earlyBytes, earlyBytes.readableBytes > Self.replayLimit {
            record.end("error", reason: "client sent more than \(Self.replayLimit) bytes before a node was connected")
            context.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            earlyEndOfInput = true
            return
        }
        guard let classified = event as? ConnectionClassified else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        record.classified = classified.detail
        route(context: context, trafficClass: classified.trafficClass, initialBytes: classified.bytes)
    }

    private func route(context: ChannelHandlerContext, trafficClass: TrafficClass, initialBytes: ByteBuffer?) {
        record.trafficClass = trafficClass
        self.initialBytes = initialBytes
        let algorithm = listener.configuration.algorithm(for: trafficClass)
        // Only affinity needs the client's address as text; the other algorithms skip the conversion.
        let clientKey = algorithm == .source ? context.channel.remoteAddress?.ipAddress ?? "unknown" : ""
        switch listener.directory.route(
            trafficClass,
            algorithm: algorithm,
            clientKey: clientKey,
            port: listener.configuration.backendPort
        ) {
        case .refused(let refusal):
            listener.refuse(record, refusal)
            answerRefusal(channel: context.channel, RefusalPage.text(for: refusal))
        case .targets(let targets):
            connect(context: context, targets: targets[...])
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        record.end("client-aborted", reason: "client closed before a node was connected")
        context.fireChannelInactive()
    }

    // MARK: - Connecting

    /// The most a client may have sent before its node's first byte for a redispatch to stay possible.
    static let replayLimit = 64 * 1024

    private func connect(context: ChannelHandlerContext, targets: ArraySlice<NodeTarget>) {
        dial(clientChannel: context.channel, targets: targets) { result in
            switch result {
            case .success(let (nodeChannel, target, remaining)):
                self.splice(context: context, nodeChannel: nodeChannel, target: target, remaining: remaining)
            case .failure:
                self.giveUp(clientChannel: context.channel)
            }
        }
    }

    /// Connects to the first target that answers; reports the channel and the targets left.
    private func dial(
        clientChannel: any Channel,
        targets: ArraySlice<NodeTarget>,
        then done: @escaping (Result<(any Channel, NodeTarget, ArraySlice<NodeTarget>), any Error>) -> Void
    ) {
        guard let target = targets.first else {
            done(.failure(ChannelError.connectPending))
            return
        }
        let directory = listener.directory
        directory.connectionOpened(to: target.node)
        let bootstrap = listener.nodeBootstrap(on: clientChannel.eventLoop)
        let connecting: EventLoopFuture<any Channel>
        if let address = target.address {
            connecting = bootstrap.connect(to: address)
        } else {
            connecting = bootstrap.connect(host: target.host, port: target.port)
        }
        connecting.assumeIsolated().whenComplete { result in
            switch result {
            case .success(let nodeChannel):
                guard clientChannel.isActive else {
                    nodeChannel.close(promise: nil)
                    directory.connectionClosed(from: target.node)
                    return
                }
                nodeChannel.closeFuture.whenComplete { _ in directory.connectionClosed(from: target.node) }
                done(.success((nodeChannel, target, targets.dropFirst())))
            case .failure(let error):
                directory.connectionClosed(from: target.node)
                self.failures.append("\(target.node) \(Self.describe(error))")
                self.record.connectFailed(to: target.node, error: "\(error)")
                if clientChannel.isActive {
                    self.dial(clientChannel: clientChannel, targets: targets.dropFirst(), then: done)
                }
            }
        }
    }

    private func giveUp(clientChannel: any Channel) {
        listener.giveUp(record, failures: failures)
        answerRefusal(
            channel: clientChannel,
            "no UMS server answered: \(failures.joined(separator: ", ")); try again in a moment")
    }

    /// A `by-path` client speaks HTTP, so it is told why in a 503; other clients are closed at once.
    private func answerRefusal(channel: any Channel, _ text: String) {
        guard case .byPath = listener.configuration.classification, channel.isActive else {
            channel.close(promise: nil)
            return
        }
        let answer = RefusalPage.response(text: text)
        channel.writeAndFlush(ByteBuffer(bytes: answer)).whenComplete { _ in channel.close(promise: nil) }
    }

    private func splice(
        context: ChannelHandlerContext, nodeChannel: any Channel, target: NodeTarget, remaining: ArraySlice<NodeTarget>
    ) {
        let clientGlue = GlueHandler.clientSide(replayLimit: Self.replayLimit, overTLS: listener.tls != nil)
        if let initialBytes {
            record.peekedBytes = initialBytes.readableBytes
            clientGlue.seed(initialBytes)
            self.initialBytes = nil
        }
        if let earlyBytes {
            record.peekedBytes += earlyBytes.readableBytes
            clientGlue.seed(earlyBytes)
            self.earlyBytes = nil
        }
        if earlyEndOfInput { clientGlue.seedEndOfInput() }
        record.clientGlue = clientGlue
        clientGlue.lingerLimit = TimeAmount(listener.timeouts.idle)
        do {
            try context.pipeline.syncOperations.addHandler(clientGlue)
        } catch {
            record.end("error", reason: "cannot set up the splice: \(error)")
            nodeChannel.close(promise: nil)
            context.close(promise: nil)
            return
        }
        let clientChannel = context.channel
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        attach(nodeChannel, target: target, remaining: remaining, to: clientGlue, clientChannel: clientChannel)
        // Reading starts only now that both sides are glued: nothing is read before a node is there.
        clientChannel.setOption(.autoRead, value: true).whenFailure { _ in clientChannel.close(promise: nil) }
    }

    /// Glues a connected node to the client; if that node closes without answering, the client is
    /// handed to the next node with what it sent so far.
    private func attach(
        _ nodeChannel: any Channel,
        target: NodeTarget,
        remaining: ArraySlice<NodeTarget>,
        to clientGlue: GlueHandler,
        clientChannel: any Channel
    ) {
        record.node = target.node
        let nodeGlue = GlueHandler.nodeSide(overTLS: listener.tls?.backend != nil) { [weak clientGlue] in
            guard let clientGlue, clientGlue.canReplay, !remaining.isEmpty, clientChannel.isActive else { return false }
            self.redispatch(from: target, remaining: remaining, clientGlue: clientGlue, clientChannel: clientChannel)
            return true
        }
        record.nodeGlue = nodeGlue
        // A node that stopped reading gets the idle timeout to take what is queued for it.
        nodeGlue.lingerLimit = TimeAmount(listener.timeouts.idle)
        do {
            try nodeChannel.pipeline.syncOperations.addHandlers([
                ConnectionGuard(record: record, side: "node"),
                nodeGlue,
            ])
        } catch {
            record.end("error", reason: "cannot set up the splice: \(error)")
            nodeChannel.close(promise: nil)
            clientChannel.close(promise: nil)
            return
        }
        // The node channel reads from the start: its glue is attached here, in the connect callback,
        // before the event loop can deliver any of its bytes, which saves two epoll changes per connection.
        clientGlue.attach(nodeGlue)
    }

    private func redispatch(
        from failed: NodeTarget, remaining: ArraySlice<NodeTarget>, clientGlue: GlueHandler, clientChannel: any Channel
    ) {
        failures.append("\(failed.node) closed without answering")
        record.handedOn(from: failed.node)
        dial(clientChannel: clientChannel, targets: remaining) { result in
            switch result {
            case .success(let (nodeChannel, target, rest)):
                self.attach(nodeChannel, target: target, remaining: rest, to: clientGlue, clientChannel: clientChannel)
            case .failure:
                self.giveUp(clientChannel: clientChannel)
            }
        }
    }

    /// A short, stable description for logs: "connection refused", "timed out".
    static func describe(_ error: any Error) -> String {
        switch error {
        case ChannelError.connectTimeout: return "connect timed out"
        case let error as IOError where error.errnoCode == ECONNREFUSED: return "connection refused"
        case let error as NIOConnectionError:
            if let first = error.connectionErrors.first { return describe(first.error) }
            return "cannot resolve \(error.host)"
        case let error as IOError: return error.description
        default: return "\(error)"
        }
    }
}

@available(*, unavailable)
extension ProxyHandler: Sendable {}

extension Balancer {
    /// Every channel keeps its last receive buffer for the next read, idle or not: start small
    /// (a device's request is a few hundred bytes) and let busy connections grow to 64 KiB reads.
    static let receiveBuffers = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 256, maximum: 65_536)
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
