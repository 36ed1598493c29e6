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
            ) { NodeStatus(id: $0, health: .up, mode: .normal) }
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

@Suite struct PathConnectionTests {
    static let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    @Test func theNodeGetsTheHeadAsAReverseProxyForwardsIt() throws {
        let path = try EmbeddedPath()
        try path.clientSends(
            "GET /device-connector/x HTTP/1.1\r\nHost: ums\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
                + "X-SSL-CERT: forged\r\nX-Forwarded-For: 6.6.6.6\r\nTE: trailers\r\nAccept: */*\r\n\r\n")
        #expect(path.nodes.count == 1)
        let head = try path.written(to: path.node)
        #expect(head.hasPrefix("GET /device-connector/x HTTP/1.1\r\n"))
        for gone in ["X-Hop", "X-SSL-CERT", "6.6.6.6", "TE:", "Connection:"] {
            #expect(!head.contains(gone), "\(gone) in \(head)")
        }
        #expect(head.contains("Host: ums\r\n"))
        #expect(head.contains("Accept: */*\r\n"))
        #expect(head.contains("X-Forwarded-For: 127.0.0.1\r\n"))
        #expect(head.contains("X-Forwarded-Proto: https\r\n"))
        try path.nodeSends(Self.answer)
        #expect(try path.written(to: path.client) == Self.answer)
        #expect(path.client.isActive)
    }

    @Test func theNextRequestReusesThePooledNodeConnection() throws {
        let path = try EmbeddedPath(nodes: ["ums1"])
        try path.clientSends("GET /a HTTP/1.1\r\nHost: ums\r\n\r\n")
        try path.nodeSends(Self.answer)
        _ = try path.written(to: path.client)
        try path.clientSends("GET /b HTTP/1.1\r\nHost: ums\r\n\r\n")
        #expect(path.nodes.count == 1, "no second node connection")
        #expect(try path.written(to: path.node).contains("GET /b HTTP/1.1\r\n"))
        try path.nodeSends(Self.answer)
        #expect(try path.written(to: path.client) == Self.answer)
        #expect(path.requestLines.map { $0.metadata["path"] } == ["/a", "/b"])
        #expect(path.directory.connections(to: "ums1") == 0, "a pooled connection carries no request")
    }

    @Test func aPooledConnectionTheNodeClosedGetsAGETAgainOnAFreshOne() throws {
        let path = try EmbeddedPath(nodes: ["ums1"])
        try path.clientSends("GET /a HTTP/1.1\r\nHost: ums\r\n\r\n")
        try path.nodeSends(Self.answer)
        _ = try path.written(to: path.client)
        try path.clientSends("GET /b HTTP/1.1\r\nHost: ums\r\n\r\n")
        _ = try path.written(to: path.node)
        // The node had closed the idle connection just as the request went out.
        path.node.pipeline.fireChannelInactive()
        path.refreshNodes()
        #expect(path.nodes.count == 2)
        #expect(try path.written(to: path.node).hasPrefix("GET /b HTTP/1.1\r\n"))
        try path.nodeSends(Self.answer)
        #expect(try path.written(to: path.client) == Self.answer)
        #expect(path.requestLines.last?.metadata["retries"] == "1")
    }

    @Test func aPOSTIsNeverSentTwiceAndTheClientGets502() throws {
        let path = try EmbeddedPath(nodes: ["ums1"])
        try path.clientSends("GET /a HTTP/1.1\r\nHost: ums\r\n\r\n")
        try path.nodeSends(Self.answer)
        _ = try path.written(to: path.client)
        try path.clientSends("POST /console/login HTTP/1.1\r\nHost: ums\r\nContent-Length: 2\r\n\r\n{}")
        path.node.pipeline.fireChannelInactive()
        path.refreshNodes()
        #expect(path.nodes.count == 1)
        let answer = try path.written(to: path.client)
        #expect(answer.hasPrefix("HTTP/1.1 502 Bad Gateway\r\n"), "\(answer)")
        #expect(path.client.isActive, "the request was read whole: the connection stays usable")
    }

    @Test func aRefusedRequestGets503WithRetryAfterAndTheConnectionStays() throws {
        let path = try EmbeddedPath(nodes: [])
        try path.clientSends("POST /console/login HTTP/1.1\r\nHost: ums\r\nContent-Length: 2\r\n\r\n{}")
        let answer = try path.written(to: path.client)
        #expect(answer.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"))
        #expect(answer.contains("Retry-After: 30\r\n"))
        #expect(!answer.contains("Connection: close"))
        #expect(answer.hasSuffix("no UMS servers are configured\n"))
        try path.clientSends("GET /webapp HTTP/1.1\r\nHost: ums\r\nConnection: close\r\n\r\n")
        let second = try path.written(to: path.client)
        #expect(second.hasPrefix("HTTP/1.1 503 "))
        #expect(second.contains("Connection: close\r\n"))
        #expect(!path.client.isActive)
        #expect(path.requestLines.map { $0.metadata["outcome"] } == ["refused", "refused"])
        #expect(path.connectionLine?.metadata["requests"] == "2")
    }

    @Test func tooManyHeaderFieldsAreAnswered431AndClosed() throws {
        var http = HTTPSettings()
        http.maxHeaders = 3
        let path = try EmbeddedPath(http: http)
        try path.clientSends("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n")
        let answer = try path.written(to: path.client)
        #expect(answer.hasPrefix("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "\(answer)")
        #expect(answer.contains("more than 3 header fields (max_headers)"))
        #expect(path.nodes.isEmpty)
        path.lingerUntilClosed()
        #expect(path.connectionLine?.metadata["outcome"] == "bad-request")
        #expect(path.requestLines.first?.metadata["outcome"] == "rejected")
    }

    @Test func aHeadLargerThanTheLimitIsAnswered431BeforeItEnds() throws {
        var http = HTTPSettings()
        http.maxHeaderSize = 1024
        let path = try EmbeddedPath(http: http)
        try path.clientSends("GET / HTTP/1.1\r\nX-Big: " + String(repeating: "a", count: 2000))
        let answer = try path.written(to: path.client)
        #expect(answer.hasPrefix("HTTP/1.1 431 "), "\(answer)")
        path.lingerUntilClosed()
        #expect(path.connectionLine?.metadata["reason"] == "request head larger than 1024 bytes (max_header_size)")
    }

    @Test func garbageIsAnswered400() throws {
        let path = try EmbeddedPath()
        try path.clientSends("GET / HTTP/1.1\r\nBad Header\r\n\r\n")
        #expect(try path.written(to: path.client).hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        path.lingerUntilClosed()
    }

    @Test func aSlowLaterHeadIsAnswered408AndAnIdleConnectionClosedSilently() throws {
        var http = HTTPSettings()
        http.headerTimeout = .seconds(2)
        http.keepAliveTimeout = .seconds(30)
        let path = try EmbeddedPath(nodes: ["ums1"], http: http)
        try path.clientSends("GET /a HTTP/1.1\r\nHost: ums\r\n\r\n")
        try path.nodeSends(Self.answer)
        _ = try path.written(to: path.client)
        try path.clientSends("GET /b HTTP/1.1\r\nHo")
        path.tick(after: .seconds(1))
        #expect(path.client.isActive)
        path.tick(after: .seconds(3))
        let answer = try path.written(to: path.client)
        #expect(answer.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"), "\(answer)")
        path.lingerUntilClosed()

        let idle = try EmbeddedPath(nodes: ["ums1"], http: http)
        try idle.clientSends("GET /a HTTP/1.1\r\nHost: ums\r\n\r\n")
        try idle.nodeSends(Self.answer)
        idle.tick(after: .seconds(29))
        #expect(idle.client.isActive)
        idle.tick(after: .seconds(31))
        #expect(!idle.client.isActive)
        #expect(idle.connectionLine?.metadata["outcome"] == "idle-timeout")
    }

    @Test func theLastOfMaxRequestsIsAnsweredWithConnectionClose() throws {
        var http = HTTPSettings()
        http.maxRequests = 2
        let path = try EmbeddedPath(nodes: ["ums1"], http: http)
        for (index, target) in ["/a", "/b"].enumerated() {
            try path.clientSends("GET \(target) HTTP/1.1\r\nHost: ums\r\n\r\n")
            try path.nodeSends(Self.answer)
            let answer = try path.written(to: path.client)
            #expect(answer.contains("Connection: close") == (index == 1), "\(answer)")
        }
        #expect(!path.client.isActive)
        #expect(path.connectionLine?.metadata["reason"] == "served 2 requests (max_requests)")
    }

    @Test func aBodyIsReadOnlyWhileTheNodeCanTakeIt() throws {
        let path = try EmbeddedPath(nodes: ["ums1"])
        try path.clientSends("POST /upload HTTP/1.1\r\nHost: ums\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        #expect(try path.written(to: path.node).hasSuffix("5\r\nhello\r\n"))
        path.node.isWritable = false
        path.node.pipeline.fireChannelWritabilityChanged()
        let readsBefore = path.clientSocket.reads
        path.client.read()
        #expect(path.clientSocket.reads == readsBefore, "no read while the node cannot take more")
        path.node.isWritable = true
        path.node.pipeline.fireChannelWritabilityChanged()
        #expect(path.clientSocket.reads == readsBefore + 1)
        try path.clientSends("0\r\n\r\n")
        #expect(try path.written(to: path.node) == "0\r\n\r\n")
    }

    @Test func aContinueIsPassedOnAndTheAnswerFollows() throws {
        let path = try EmbeddedPath(nodes: ["ums1"])
        try path.clientSends("PUT /upload HTTP/1.1\r\nHost: ums\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        try path.nodeSends("HTTP/1.1 100 Continue\r\n\r\n")
        #expect(try path.written(to: path.client) == "HTTP/1.1 100 Continue\r\n\r\n")
        try path.clientSends("{}")
        try path.nodeSends(Self.answer)
        #expect(try path.written(to: path.client) == Self.answer)
    }

    @Test func aDrainAtTheDrainTimeoutAnswersARequestStillWaiting503() throws {
        let path = try EmbeddedPath(nodes: ["ums1"])
        try path.clientSends("GET /slow HTTP/1.1\r\nHost: ums\r\n\r\n")
        #expect(path.directory.connections(to: "ums1") == 1, "a request in flight counts against its node")
        #expect(path.registry.count(relayedTo: "ums1") == 1)
        #expect(path.registry.count == 1, "the client connection is counted once")
        path.registry.drain("ums1")
        path.loop.run()
        let answer = try path.written(to: path.client)
        #expect(answer.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"), "\(answer)")
        #expect(path.client.isActive, "the connection is not tied to the node: it stays")
        #expect(!path.node.isActive, "the node's connection is closed")
        #expect(path.directory.connections(to: "ums1") == 0)
        #expect(path.requestLines.first?.metadata["outcome"] == "drained")
        // An idle keep-alive connection is untouched by a drain.
        path.registry.drain("ums1")
        path.loop.run()
        #expect(path.client.isActive)
    }

    @Test func aRefusedConnectGoesToTheNextNodeBeforeTheClientNotices() throws {
        let path = try EmbeddedPath(nodes: ["ums1", "ums2"], refusing: ["ums1"])
        try path.clientSends("GET /device-connector/x HTTP/1.1\r\nHost: ums\r\n\r\n")
        #expect(path.nodes.map(\.node) == ["ums2"], "ums1 refused: ums2 got the request")
        try path.nodeSends(Self.answer)
        #expect(try path.written(to: path.client) == Self.answer)
        #expect(path.requestLines.first?.metadata["node"] == "ums2")
    }

    @Test func whenEveryNodeRefusesTheClientIsToldWhich() throws {
        let path = try EmbeddedPath(nodes: ["ums1", "ums2"], refusing: ["ums1", "ums2"])
        try path.clientSends("GET /device-connector/x HTTP/1.1\r\nHost: ums\r\n\r\n")
        let answer = try path.written(to: path.client)
        #expect(answer.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"), "\(answer)")
        #expect(answer.contains("ums1 connection refused"))
        #expect(answer.contains("ums2 connection refused"))
        #expect(path.client.isActive)
        #expect(path.requestLines.first?.metadata["outcome"] == "unavailable")
    }

    @Test func aConnectionOverTheListenersLimitIsToldWhyWithRetryAfter() throws {
        var listener = ListenerConfiguration(
            name: "web", bind: Endpoint(host: "127.0.0.1", port: 1), backendPort: 8443,
            classification: .byPath(PathListenerSettings.testing))
        listener.maxConnections = 1
        let admission = Admission().listener(listener)
        let first = try EmbeddedPath(admission: admission)
        let second = try EmbeddedPath(admission: admission)
        try second.clientSends("GET /webapp HTTP/1.1\r\nHost: ums\r\n\r\n")
        let answer = try second.written(to: second.client)
        #expect(answer.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"))
        #expect(answer.contains("Retry-After: 30\r\n"))
        #expect(answer.contains("Connection: close\r\n"))
        #expect(answer.contains("max_connections"))
        second.lingerUntilClosed()
        #expect(second.nodes.isEmpty)
        #expect(second.connectionLine?.metadata["outcome"] == "refused")
        #expect(first.client.isActive)
    }

    @Test func aRequestThatFindsEveryNodeAtItsLimitWaitsForASlot() throws {
        let loop = EmbeddedEventLoop()
        var node = NodeConfiguration(id: "ums1", host: "127.0.0.11")
        node.maxConnections = 1
        let directory = NodeDirectory(nodes: [node], consolePolicy: .normalOnly) {
            NodeStatus(id: $0, health: .up, mode: .normal)
        }
        directory.configure(passive: PassiveHealthSettings(), slowStart: .zero, nodes: [node])
        let first = try EmbeddedPath(directory: directory, loop: loop)
        let second = try EmbeddedPath(directory: directory, loop: loop)
        try first.clientSends("GET /a HTTP/1.1\r\nHost: ums\r\n\r\n")
        try second.clientSends("GET /b HTTP/1.1\r\nHost: ums\r\n\r\n")
        #expect(second.nodes.isEmpty, "ums1 holds its max_connections")
        second.tick(after: .seconds(1))
        #expect(second.nodes.isEmpty)
        try first.nodeSends(Self.answer)
        second.tick(after: .seconds(2))
        #expect(second.nodes.count == 1, "the slot freed: the waiting request goes")
        try second.nodeSends(Self.answer)
        #expect(try second.written(to: second.client) == Self.answer)
    }

    @Test func anUpgradeLeavesHTTPAndRelaysBytesBothWays() throws {
        let path = try EmbeddedPath(nodes: ["ums1"])
        try path.clientSends(
            "GET /device-connector/device/ws-connect HTTP/1.1\r\nHost: ums\r\nUpgrade: websocket\r\n"
                + "Connection: Upgrade\r\n\r\n")
        let head = try path.written(to: path.node)
        #expect(head.contains("Upgrade: websocket\r\n"))
        #expect(head.contains("Connection: Upgrade\r\n"))
        try path.nodeSends("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhi")
        // The decoders leave the pipelines on a later turn of the loop; then bytes move.
        path.loop.run()
        #expect(
            try path.written(to: path.client)
                == "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhi")
        try path.clientSends("frame")
        #expect(try path.written(to: path.node) == "frame")
        try path.nodeSends("back")
        #expect(try path.written(to: path.client) == "back")
        #expect(path.directory.connections(to: "ums1") == 1, "an upgraded connection counts against its node")
        #expect(path.registry.count(relayedTo: "ums1") == 1, "a drain of the node reaches it")
        path.registry.drain("ums1")
        path.loop.run()
        #expect(!path.client.isActive)
        #expect(path.directory.connections(to: "ums1") == 0)
        #expect(path.requestLines.first?.metadata["outcome"] == "upgraded")
        #expect(path.connectionLine?.metadata["outcome"] == "closed")
    }
}
