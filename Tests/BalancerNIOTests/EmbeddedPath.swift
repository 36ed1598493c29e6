import BalancerCore
import BalancerDataPath
import BalancerStore
import BalancerTesting
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOTLS
import Testing

@testable import BalancerNIO

/// A `by-path` client connection on embedded channels: the client channel carries the plain text
/// TLS would deliver, and node channels are handed out by the test's connector in dial order.
final class EmbeddedPath {
    let loop: EmbeddedEventLoop
    let logs = LogCapture()
    let clientSocket = SocketStandIn()
    let client: EmbeddedChannel
    let connection: PathConnection
    let registry = ConnectionRegistry()
    let directory: NodeDirectory
    var nodes: [(node: NodeID, channel: EmbeddedChannel, socket: SocketStandIn)] = []
    private let dialled = DialledNodes()

    init(
        nodes ids: [NodeID] = ["ums1", "ums2"], http: HTTPSettings = HTTPSettings(),
        directory shared: NodeDirectory? = nil, loop: EmbeddedEventLoop = EmbeddedEventLoop(),
        admission: ListenerAdmission? = nil, refusing: Set<NodeID> = [],
        configure: (inout ListenerConfiguration) -> Void = { _ in }
    ) throws {
        self.loop = loop
        var settings = PathListenerSettings.testing
        settings.http = http
        var configuration = ListenerConfiguration(
            name: "web", bind: Endpoint(host: "127.0.0.1", port: 1), backendPort: 8443,
            classification: .byPath(settings))
        configure(&configuration)
        directory =
            shared
            ?? NodeDirectory(
                nodes: ids.map { NodeConfiguration(id: $0, host: "127.0.0.\(10 + Int($0.dropFirst(3))!)") },
                consolePolicy: .normalOnly
            ) { _ in NodeObservation(health: .up, mode: .normal) }
        let shared = ListenerContext(
            configuration: configuration, directory: directory, timeouts: TimeoutSettings(),
            accessLogger: logs.logger(label: "access"), journal: Journal(store: nil, logger: logs.logger()),
            metrics: ListenerMetrics(listener: "web"), admission: admission ?? Admission().listener(configuration))
        let dialled = self.dialled
        let context = NIOListenerContext(shared: shared, tls: nil, group: loop) { target, loop in
            if refusing.contains(target.node) {
                return loop.makeFailedFuture(IOError(errnoCode: ECONNREFUSED, reason: "connect"))
            }
            let channel = EmbeddedChannel(loop: loop as! EmbeddedEventLoop)
            let socket = SocketStandIn()
            try! channel.pipeline.syncOperations.addHandler(socket)
            try! channel.connect(to: SocketAddress(ipAddress: "127.0.0.2", port: 1)).wait()
            dialled.all.append((target.node, channel, socket))
            return loop.makeSucceededFuture(channel)
        }
        client = EmbeddedChannel(loop: loop)
        try client.pipeline.syncOperations.addHandler(clientSocket)
        connection = try PathConnection.setUp(
            client, listener: context, settings: settings, listenerKey: 1, registry: registry, sweeper: nil,
            withoutTLS: true)
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
        client.pipeline.fireUserInboundEventTriggered(TLSUserEvent.handshakeCompleted(negotiatedProtocol: "http/1.1"))
    }

    func refreshNodes() {
        nodes = dialled.all.map { (node: $0.0, channel: $0.1, socket: $0.2) }
    }

    var node: EmbeddedChannel { nodes.last!.channel }

    func clientSends(_ text: String) throws {
        try client.writeInbound(ByteBuffer(string: text))
        client.pipeline.fireChannelReadComplete()
        refreshNodes()
    }

    func nodeSends(_ text: String, node index: Int? = nil) throws {
        let channel = index.map { nodes[$0].channel } ?? node
        try channel.writeInbound(ByteBuffer(string: text))
        channel.pipeline.fireChannelReadComplete()
        refreshNodes()
    }

    /// Everything written to `channel` so far, as text.
    func written(to channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let data = try channel.readOutbound(as: IOData.self) {
            if case .byteBuffer(let buffer) = data { text += String(buffer: buffer) }
        }
        return text
    }

    /// Time passes by `amount`: the connection's timers are looked at.
    func tick(after amount: Duration) {
        connection.tick(NIODeadline.now() + TimeAmount(amount))
        refreshNodes()
    }

    /// After an answer that ends the connection: the balancer stopped writing and reads on
    /// until the client closes or the linger limit passes; here the limit passes.
    func lingerUntilClosed(sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(client.isActive, "still reading what the client sends", sourceLocation: sourceLocation)
        #expect(clientSocket.closes.contains(.output), "no more writing", sourceLocation: sourceLocation)
        loop.advanceTime(by: ClientWire.lingerLimit)
        #expect(!client.isActive, "closed at the linger limit", sourceLocation: sourceLocation)
    }

    var requestLines: [LogCapture.Record] { logs.records("request") }
    var connectionLine: LogCapture.Record? { logs.records("connection").first }
}
