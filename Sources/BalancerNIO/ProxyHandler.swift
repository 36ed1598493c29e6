import BalancerCore
import BalancerStore
import Logging
import NIOCore
import NIOPosix

/// What every connection of one listener shares.
struct ListenerContext: Sendable {
    var configuration: ListenerConfiguration
    var directory: NodeDirectory
    var timeouts: TimeoutSettings
    var accessLogger: Logger
    var journal: Journal
    var metrics: ListenerMetrics
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

    init(listener: ListenerContext, record: ConnectionRecord) {
        self.listener = listener
        self.record = record
    }

    func channelActive(context: ChannelHandlerContext) {
        context.channel.closeFuture.assumeIsolated().whenComplete { [record] _ in
            if record.node == nil { record.log() }
        }
        if case .fixed(let trafficClass) = listener.configuration.classification {
            route(context: context, trafficClass: trafficClass, initialBytes: nil)
        }
        // Other listeners wait for a classifier's `ConnectionClassified`.
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let classified = event as? ConnectionClassified else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        record.logger[metadataKey: "classified"] = "\(classified.detail)"
        route(context: context, trafficClass: classified.trafficClass, initialBytes: classified.bytes)
    }

    private func route(context: ChannelHandlerContext, trafficClass: TrafficClass, initialBytes: ByteBuffer?) {
        record.trafficClass = trafficClass
        self.initialBytes = initialBytes
        let clientKey = context.channel.remoteAddress?.ipAddress ?? "unknown"
        switch listener.directory.route(
            trafficClass,
            algorithm: listener.configuration.algorithm(for: trafficClass),
            clientKey: clientKey,
            port: listener.configuration.backendPort
        ) {
        case .refused(let refusal):
            record.end("refused", reason: refusal.description)
            listener.journal.record(.refusal, "\(listener.configuration.name): \(refusal)")
            listener.metrics.refused(trafficClass: trafficClass, reason: "no-eligible-node")
            context.close(promise: nil)
        case .targets(let targets):
            connect(context: context, targets: targets[...])
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        record.end("client-aborted", reason: "client closed before a node was connected")
        context.fireChannelInactive()
    }

    // MARK: - Connecting

    private func connect(context: ChannelHandlerContext, targets: ArraySlice<NodeTarget>) {
        guard let target = targets.first else {
            listener.journal.record(
                .refusal,
                "\(listener.configuration.name): \(record.trafficClass) unavailable: \(failures.joined(separator: ", "))"
            )
            record.end(
                "unavailable",
                reason: "\(record.trafficClass) unavailable: every node failed: \(failures.joined(separator: ", "))")
            context.close(promise: nil)
            return
        }
        let directory = listener.directory
        directory.connectionOpened(to: target.node)
        let bootstrap = ClientBootstrap(group: context.eventLoop)
            .connectTimeout(TimeAmount(listener.timeouts.connect))
            .channelOption(.autoRead, value: false)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
        let connecting: EventLoopFuture<any Channel>
        if let address = try? SocketAddress(ipAddress: target.host, port: target.port) {
            connecting = bootstrap.connect(to: address)
        } else {
            connecting = bootstrap.connect(host: target.host, port: target.port)
        }
        connecting.assumeIsolated().whenComplete { result in
            switch result {
            case .success(let nodeChannel):
                guard context.channel.isActive else {
                    nodeChannel.close(promise: nil)
                    directory.connectionClosed(from: target.node)
                    return
                }
                self.splice(context: context, nodeChannel: nodeChannel, target: target)
            case .failure(let error):
                directory.connectionClosed(from: target.node)
                self.failures.append("\(target.node) \(Self.describe(error))")
                self.record.logger.debug(
                    "connect failed, trying next node", metadata: ["node": "\(target.node)", "error": "\(error)"])
                if context.channel.isActive {
                    self.connect(context: context, targets: targets.dropFirst())
                }
            }
        }
    }

    private func splice(context: ChannelHandlerContext, nodeChannel: any Channel, target: NodeTarget) {
        let record = self.record
        record.node = target.node
        record.logger[metadataKey: "node"] = "\(target.node)"
        let (clientGlue, nodeGlue) = GlueHandler.matchedPair()
        record.clientGlue = clientGlue
        record.nodeGlue = nodeGlue
        do {
            try nodeChannel.pipeline.syncOperations.addHandlers([
                IdleStateHandler(allTimeout: TimeAmount(listener.timeouts.idle)),
                ConnectionGuard(record: record, side: "node"),
                nodeGlue,
            ])
            try context.pipeline.syncOperations.addHandler(clientGlue)
        } catch {
            record.end("error", reason: "cannot set up the splice: \(error)")
            nodeChannel.close(promise: nil)
            context.close(promise: nil)
            listener.directory.connectionClosed(from: target.node)
            return
        }
        let directory = listener.directory
        context.channel.closeFuture.and(nodeChannel.closeFuture).assumeIsolated().whenComplete { _ in
            directory.connectionClosed(from: target.node)
            record.log()
        }
        if let initialBytes, initialBytes.readableBytes > 0 {
            record.peekedBytes = initialBytes.readableBytes
            nodeChannel.writeAndFlush(initialBytes, promise: nil)
            self.initialBytes = nil
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        // Reading starts only now that both sides are glued: nothing is read before a node is there.
        nodeChannel.setOption(.autoRead, value: true).whenFailure { _ in nodeChannel.close(promise: nil) }
        let clientChannel = context.channel
        clientChannel.setOption(.autoRead, value: true).whenFailure { _ in clientChannel.close(promise: nil) }
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

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
