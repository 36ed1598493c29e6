import BalancerCore
import Logging
import NIOCore
import NIOEmbedded
import NIOTLS
import Testing

@testable import BalancerNIO

/// Catches what the classifier hands on.
final class ClassifiedCatcher: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    var events: [ConnectionClassified] = []

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ConnectionClassified { events.append(event) }
    }
}

/// The request-head reader of `by-path` listeners, with the TLS layer left out.
@Suite struct PathClassifierTests {
    func channel() throws -> (EmbeddedChannel, ClassifiedCatcher, ConnectionRecord) {
        let record = ConnectionRecord(
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }), client: nil,
            trafficClass: .console,
            metrics: ListenerMetrics(listener: "web"))
        let catcher = ClassifiedCatcher()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([
            PathClassifier(rules: .standard, timeout: .seconds(5), record: record, listener: "web"), catcher,
        ])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        channel.pipeline.fireUserInboundEventTriggered(TLSUserEvent.handshakeCompleted(negotiatedProtocol: nil))
        return (channel, catcher, record)
    }

    @Test func handsOnTheRewrittenHeadAndWhatFollowsIt() throws {
        let (channel, catcher, _) = try channel()
        try channel.writeInbound(ByteBuffer(string: "POST /console/login HTTP/1.1\r\nX-SSL-CERT: forged\r\n"))
        #expect(catcher.events.isEmpty)
        try channel.writeInbound(ByteBuffer(string: "Host: ums\r\n\r\n{}"))
        let event = try #require(catcher.events.first)
        #expect(event.trafficClass == .console)
        #expect(
            String(buffer: event.bytes)
                == "POST /console/login HTTP/1.1\r\nHost: ums\r\nConnection: close\r\n\r\n{}")
        #expect(throws: (any Error).self) { try channel.pipeline.syncOperations.handler(type: PathClassifier.self) }
        _ = try channel.finish()
    }

    @Test func answersAnOversizedHeadWith431AndCloses() throws {
        let (channel, catcher, record) = try channel()
        try channel.writeInbound(
            ByteBuffer(string: "GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: RequestHead.defaultLimit)))
        let answer = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(String(buffer: answer).hasPrefix("HTTP/1.1 431 Request Header Fields Too Large\r\n"))
        #expect(catcher.events.isEmpty)
        #expect(!channel.isActive)
        #expect(record.outcome == "bad-request")
    }
}
