import BalancerCore
import BalancerDataPath
import BalancerStore
import BalancerTesting
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOPosix
import NIOTLS
import Testing

@testable import BalancerNIO

/// Records the close modes and reads that reach the head of a pipeline, standing in for the socket.
final class SocketStandIn: ChannelOutboundHandler {
    typealias OutboundIn = Any
    var closes: [CloseMode] = []
    var reads = 0

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        closes.append(mode)
        if mode == .output {
            promise?.succeed()
        } else {
            context.close(mode: mode, promise: promise)
        }
    }

    func read(context: ChannelHandlerContext) {
        reads += 1
        context.read()
    }
}

/// The NIO executor on embedded channels: a client channel with its relay, and node channels the
/// test's connector hands out in the order the relay dials them.
final class EmbeddedRelay {
    let loop = EmbeddedEventLoop()
    let logs = LogCapture()
    let clientSocket = SocketStandIn()
    let client: EmbeddedChannel
    /// Every node channel dialled so far, with its stand-in socket.
    var nodes: [(node: NodeID, channel: EmbeddedChannel, socket: SocketStandIn)] = []

    init(
        classification: ListenerClassification = .fixed(.device), nodes ids: [NodeID] = ["ums1", "ums2"],
        replayLimit: Int? = nil, admission: ListenerAdmission = .unlimited()
    ) throws {
        let shared = Self.listener(
            logs: logs, classification: classification, nodes: ids, replayLimit: replayLimit, admission: admission)
        let dialled = DialledNodes()
        let context = NIOListenerContext(shared: shared, tls: nil, group: loop) { target, loop in
            let embedded = loop as! EmbeddedEventLoop
            let channel = EmbeddedChannel(loop: embedded)
            let socket = SocketStandIn()
            try! channel.pipeline.syncOperations.addHandler(socket)
            try! channel.connect(to: SocketAddress(ipAddress: "127.0.0.2", port: 1)).wait()
            dialled.all.append((target.node, channel, socket))
            return loop.makeSucceededFuture(channel)
        }
        client = EmbeddedChannel(loop: loop)
        try client.pipeline.syncOperations.addHandler(clientSocket)
        try NIORelay.attach(
            to: client, listener: context, listenerKey: 1, registry: ConnectionRegistry(), sweeper: nil)
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        self.nodesDialled = { dialled.all }
        refreshNodes()
    }

    private let nodesDialled: () -> [(NodeID, EmbeddedChannel, SocketStandIn)]

    /// A `devices` listener on 127.0.0.1 whose nodes are all up and normal, logging to `logs`.
    static func listener(
        logs: LogCapture, classification: ListenerClassification = .fixed(.device), nodes ids: [NodeID] = ["ums1"],
        replayLimit: Int? = nil, admission: ListenerAdmission = .unlimited()
    ) -> ListenerContext {
        let configuration = ListenerConfiguration(
            name: "devices", bind: Endpoint(host: "127.0.0.1", port: 1), backendPort: 30001,
            classification: classification)
        let directory = NodeDirectory(
            nodes: ids.map { NodeConfiguration(id: $0, host: "127.0.0.\(10 + Int($0.dropFirst(3))!)") },
            consolePolicy: .normalOnly
        ) { _ in NodeObservation(health: .up, mode: .normal) }
        var settings = ConnectionSettings(for: configuration, timeouts: TimeoutSettings())
        if let replayLimit { settings.replayLimit = replayLimit }
        return ListenerContext(
            configuration: configuration, directory: directory, settings: settings,
            accessLogger: logs.logger(label: "access"), journal: Journal(store: nil, logger: logs.logger()),
            metrics: ListenerMetrics(listener: "devices"), admission: admission)
    }

    func refreshNodes() {
        nodes = nodesDialled().map { (node: $0.0, channel: $0.1, socket: $0.2) }
    }

    var node: EmbeddedChannel { nodes.last!.channel }
    var nodeSocket: SocketStandIn { nodes.last!.socket }

    func clientSends(_ text: String) throws {
        try client.writeInbound(ByteBuffer(string: text))
        client.pipeline.fireChannelReadComplete()
    }

    func nodeSends(_ text: String, node index: Int? = nil) throws {
        let channel = index.map { nodes[$0].channel } ?? node
        try channel.writeInbound(ByteBuffer(string: text))
        channel.pipeline.fireChannelReadComplete()
    }

    /// Everything written to `channel` so far, as text.
    func written(to channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    var accessLine: LogCapture.Record? { logs.records("connection").first }
}

/// The node channels a connector handed out; only touched on the embedded loop's one thread.
final class DialledNodes: @unchecked Sendable {
    var all: [(NodeID, EmbeddedChannel, SocketStandIn)] = []
}

@Suite struct NIORelayTests {
    @Test func bytesReadOnOneSideAreWrittenAndFlushedOnTheOther() throws {
        let relay = try EmbeddedRelay()
        try relay.clientSends("GET /profile")
        #expect(try relay.written(to: relay.node) == "GET /profile")
        try relay.nodeSends("200 OK")
        #expect(try relay.written(to: relay.client) == "200 OK")
    }

    @Test func noClientByteIsReadBeforeItsNodeIsConnected() throws {
        let relay = try EmbeddedRelay()
        #expect(relay.nodes.count == 1, "a fixed-class connection dials at once")
        #expect(relay.clientSocket.reads > 0, "reading starts once the node is connected")
    }

    @Test func aChannelClosedBeforeItBecameActiveEndsTheConnectionAtOnce() async throws {
        // NIO closes an accepted channel that never became active, and tells no handler, when its
        // listener closes while the channel is set up (a shutdown right after the accept): the
        // shutdown then waited its whole grace for a connection that was gone. A failed connect
        // closes a channel the same way (an embedded channel always reports its close).
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let logs = LogCapture()
        let registry = ConnectionRegistry()
        let context = NIOListenerContext(shared: EmbeddedRelay.listener(logs: logs), tls: nil, group: group) {
            _, loop in loop.makeFailedFuture(ChannelError.ioOnClosedChannel)
        }
        let nobodyListens = try FreePort.pick()
        let connecting = ClientBootstrap(group: group).channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIORelay.attach(to: channel, listener: context, listenerKey: 1, registry: registry, sweeper: nil)
            }
        }.connect(host: "127.0.0.1", port: nobodyListens)
        await #expect(throws: (any Error).self) { try await connecting.get() }
        #expect(await registry.waitUntilEmpty(deadline: .now + .seconds(5)))
        let line = logs.records("connection").first
        #expect(line?.metadata["outcome"] == "shutdown" && line?.metadata["node"] == "-", "\(String(describing: line))")
        try await group.shutdownGracefully()
    }

    @Test func endOfInputBecomesAHalfCloseOfThePartner() throws {
        let relay = try EmbeddedRelay()
        relay.client.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(relay.nodeSocket.closes == [.output])
        #expect(relay.node.isActive)
        #expect(relay.client.isActive)
    }

    @Test func whenBothDirectionsEndedTheConnectionClosesFullyAndLogsAClose() throws {
        let relay = try EmbeddedRelay(nodes: ["ums1"])
        relay.client.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        relay.node.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(relay.nodeSocket.closes.first == .output)
        #expect(!relay.client.isActive)
        #expect(!relay.node.isActive)
        #expect(relay.accessLine?.metadata["outcome"] == "closed")
    }

    @Test func aClosedSideClosesItsPartnerAfterThePendingWrites() throws {
        let relay = try EmbeddedRelay()
        try relay.nodeSends("last words")
        _ = try relay.node.close().wait()
        #expect(try relay.written(to: relay.client) == "last words")
        #expect(!relay.client.isActive)
    }

    @Test func anErrorClosesBothSides() throws {
        let relay = try EmbeddedRelay()
        try relay.nodeSends("answer")
        relay.client.pipeline.fireErrorCaught(IOError(errnoCode: ECONNRESET, reason: "read"))
        #expect(!relay.client.isActive)
        #expect(!relay.node.isActive)
        #expect(relay.accessLine?.metadata["outcome"] == "error")
    }

    @Test func aSideStopsReadingWhileItsPartnerCannotWriteAndResumesAfter() throws {
        let relay = try EmbeddedRelay()
        relay.node.isWritable = false
        relay.node.pipeline.fireChannelWritabilityChanged()
        let readsBefore = relay.clientSocket.reads
        relay.client.read()
        #expect(relay.clientSocket.reads == readsBefore)

        relay.node.isWritable = true
        relay.node.pipeline.fireChannelWritabilityChanged()
        #expect(relay.clientSocket.reads == readsBefore + 1)

        relay.client.read()
        #expect(relay.clientSocket.reads == readsBefore + 2)
    }

    @Test func aNodeClosingWithoutAnsweringHandsTheClientToAnotherNodeWithWhatItSent() throws {
        let relay = try EmbeddedRelay()
        try relay.clientSends("hello ")
        try relay.clientSends("world")
        #expect(try relay.written(to: relay.node) == "hello world")

        let first = relay.nodes[0].node
        relay.node.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        relay.refreshNodes()
        #expect(relay.nodes.count == 2)
        #expect(Set(relay.nodes.map(\.node)) == ["ums1", "ums2"])
        #expect(relay.client.isActive, "the client must not notice the first node leaving")
        #expect(!relay.nodes[0].channel.isActive)
        #expect(try relay.written(to: relay.node) == "hello world")

        try relay.nodeSends("answer")
        #expect(try relay.written(to: relay.client) == "answer")
        _ = try relay.node.close().wait()
        #expect(!relay.client.isActive, "after an answer, a closing node closes the client")
        #expect(relay.accessLine?.metadata["retries"] == "1")
        #expect(relay.accessLine?.metadata["node"] == relay.nodes[1].node)
        #expect(relay.nodes[1].node != first)
    }

    @Test func aClientThatSentMoreThanTheReplayLimitIsNotHandedOver() throws {
        let relay = try EmbeddedRelay(replayLimit: 8)
        try relay.clientSends("more than eight bytes")
        relay.node.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        relay.refreshNodes()
        #expect(relay.nodes.count == 1)
        #expect(relay.client.isActive, "the node's EOF is the client's half-close")
        #expect(relay.clientSocket.closes == [.output])
    }

    @Test func bytesAreCountedPerSide() throws {
        let relay = try EmbeddedRelay(nodes: ["ums1"])
        try relay.clientSends("12345")
        try relay.nodeSends("123")
        relay.client.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        relay.node.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(relay.accessLine?.metadata["bytes_in"] == "5")
        #expect(relay.accessLine?.metadata["bytes_out"] == "3")
    }
}

extension PathListenerSettings {
    /// Settings whose files are never read (the embedded tests leave TLS out).
    static var testing: PathListenerSettings {
        PathListenerSettings(
            tls: ListenerTLS(certificate: "/nonexistent.pem", privateKey: "/nonexistent.key"),
            backendTLS: .noVerification)
    }
}
