import NIOCore
import NIOEmbedded
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

@Suite struct GlueHandlerTests {
    let loop = EmbeddedEventLoop()
    let clientSocket = SocketStandIn()
    let nodeSocket = SocketStandIn()
    let client: EmbeddedChannel
    let node: EmbeddedChannel

    init() throws {
        client = EmbeddedChannel(loop: loop)
        node = EmbeddedChannel(loop: loop)
        let (clientGlue, nodeGlue) = GlueHandler.matchedPair()
        try client.pipeline.syncOperations.addHandlers([clientSocket, clientGlue])
        try node.pipeline.syncOperations.addHandlers([nodeSocket, nodeGlue])
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try node.connect(to: SocketAddress(ipAddress: "127.0.0.2", port: 1)).wait()
    }

    @Test func bytesReadOnOneSideAreWrittenAndFlushedOnTheOther() throws {
        try client.writeInbound(ByteBuffer(string: "GET /profile"))
        client.pipeline.fireChannelReadComplete()
        #expect(try node.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "GET /profile"))
        try node.writeInbound(ByteBuffer(string: "200 OK"))
        node.pipeline.fireChannelReadComplete()
        #expect(try client.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "200 OK"))
    }

    @Test func endOfInputBecomesAHalfCloseOfThePartner() {
        client.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(nodeSocket.closes == [.output])
        #expect(node.isActive)
        #expect(client.isActive)
    }

    @Test func whenBothDirectionsEndedTheLastHalfCloseClosesFully() throws {
        client.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        node.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        // The client's input is gone, so its half-close waits for pending writes, then closes fully,
        // and the node side follows.
        #expect(nodeSocket.closes.first == .output)
        #expect(clientSocket.closes.first == .all)
        #expect(!client.isActive)
        #expect(!node.isActive)
    }

    @Test func aClosedSideClosesItsPartnerAfterThePendingWrites() throws {
        try node.writeInbound(ByteBuffer(string: "last words"))
        node.pipeline.fireChannelReadComplete()
        _ = try node.close().wait()
        #expect(try client.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "last words"))
        #expect(!client.isActive)
    }

    @Test func anErrorClosesBothSides() {
        client.pipeline.fireErrorCaught(ChannelError.ioOnClosedChannel)
        #expect(!client.isActive)
        #expect(!node.isActive)
    }

    @Test func aSideStopsReadingWhileItsPartnerCannotWriteAndResumesAfter() throws {
        node.isWritable = false
        node.pipeline.fireChannelWritabilityChanged()
        let readsBefore = clientSocket.reads
        client.read()
        #expect(clientSocket.reads == readsBefore)

        node.isWritable = true
        node.pipeline.fireChannelWritabilityChanged()
        #expect(clientSocket.reads == readsBefore + 1)

        client.read()
        #expect(clientSocket.reads == readsBefore + 2)
    }

    @Test func aNodeClosingWithoutAnsweringHandsTheClientToAnotherNodeWithWhatItSent() throws {
        let loop = EmbeddedEventLoop()
        let client = EmbeddedChannel(loop: loop)
        let first = EmbeddedChannel(loop: loop)
        let second = EmbeddedChannel(loop: loop)
        let clientGlue = GlueHandler.clientSide(replayLimit: 1024)
        var handedOver = 0
        let firstGlue = GlueHandler.nodeSide {
            handedOver += 1
            return true
        }
        try client.pipeline.syncOperations.addHandler(clientGlue)
        try first.pipeline.syncOperations.addHandler(firstGlue)
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try first.connect(to: SocketAddress(ipAddress: "127.0.0.2", port: 1)).wait()
        clientGlue.seed(ByteBuffer(string: "hello "))
        clientGlue.attach(firstGlue)
        try client.writeInbound(ByteBuffer(string: "world"))
        client.pipeline.fireChannelReadComplete()
        #expect(try first.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "hello "))
        #expect(try first.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "world"))

        _ = try first.close().wait()
        #expect(handedOver == 1)
        #expect(client.isActive, "the client must not notice the first node leaving")

        let secondGlue = GlueHandler.nodeSide { false }
        try second.pipeline.syncOperations.addHandler(secondGlue)
        try second.connect(to: SocketAddress(ipAddress: "127.0.0.3", port: 1)).wait()
        clientGlue.attach(secondGlue)
        #expect(try second.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "hello "))
        #expect(try second.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "world"))
        try second.writeInbound(ByteBuffer(string: "answer"))
        second.pipeline.fireChannelReadComplete()
        #expect(try client.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "answer"))
        #expect(!clientGlue.canReplay, "once the node answered nothing is kept")

        _ = try second.close().wait()
        #expect(!client.isActive, "after an answer, a closing node closes the client")
    }

    @Test func aClientThatSentMoreThanTheReplayLimitIsNotHandedOver() throws {
        let loop = EmbeddedEventLoop()
        let client = EmbeddedChannel(loop: loop)
        let node = EmbeddedChannel(loop: loop)
        let clientGlue = GlueHandler.clientSide(replayLimit: 8)
        let nodeGlue = GlueHandler.nodeSide { [weak clientGlue] in clientGlue?.canReplay ?? false }
        try client.pipeline.syncOperations.addHandler(clientGlue)
        try node.pipeline.syncOperations.addHandler(nodeGlue)
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try node.connect(to: SocketAddress(ipAddress: "127.0.0.2", port: 1)).wait()
        clientGlue.attach(nodeGlue)
        try client.writeInbound(ByteBuffer(string: "more than eight bytes"))
        #expect(!clientGlue.canReplay)
        _ = try node.close().wait()
        #expect(!client.isActive)
    }

    @Test func bytesAreCountedPerSide() throws {
        try client.writeInbound(ByteBuffer(string: "12345"))
        try node.writeInbound(ByteBuffer(string: "123"))
        let clientGlue = try client.pipeline.syncOperations.handler(type: GlueHandler.self)
        let nodeGlue = try node.pipeline.syncOperations.handler(type: GlueHandler.self)
        #expect(clientGlue.bytesRead == 5)
        #expect(nodeGlue.bytesRead == 3)
    }
}
