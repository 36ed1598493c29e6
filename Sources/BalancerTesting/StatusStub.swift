import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A node status endpoint that answers as told: honestly, with garbage, not at all, or flapping.
public final class StatusStub: Sendable {
    /// How the stub answers each `GET /status`.
    public enum Behavior: Sendable {
        /// 200 with this body.
        case json(String)
        /// Reads the request and never answers.
        case hang
        /// Every other request answered with `good`, the rest with garbage.
        case flap(good: String)
    }

    private let channel: any Channel
    private let requests: NIOLockedValueBox<Int>

    private init(channel: any Channel, requests: NIOLockedValueBox<Int>) {
        self.channel = channel
        self.requests = requests
    }

    /// Requests seen so far.
    public var requestCount: Int { requests.withLockedValue { $0 } }

    /// Starts a stub on `host:port`.
    public static func start(host: String, port: Int, behavior: Behavior) async throws -> StatusStub {
        let box = NIOLockedValueBox(behavior)
        let counter = NIOLockedValueBox(0)
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    let number = counter.withLockedValue {
                        $0 += 1
                        return $0
                    }
                    try child.pipeline.syncOperations.addHandler(
                        StubHandler(behavior: box.withLockedValue { $0 }, number: number))
                }
            }
            .bind(host: host, port: port).get()
        return StatusStub(channel: channel, requests: counter)
    }

    /// The body an honest UMS node would answer.
    public static func status(id: String, mode: String, version: String = "12.06.100") -> String {
        #"{"id":"\#(id)","mode":"\#(mode)","version":"\#(version)"}"#
    }

    public func stop() async {
        try? await channel.close()
    }
}

private final class StubHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let behavior: StatusStub.Behavior
    private let number: Int
    private var request = ""

    init(behavior: StatusStub.Behavior, number: Int) {
        self.behavior = behavior
        self.number = number
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        request += String(buffer: unwrapInboundIn(data))
        guard request.contains("\r\n\r\n") else { return }
        let body: String
        switch behavior {
        case .hang:
            return
        case .json(let text):
            body = text
        case .flap(let good):
            // Garbage rather than a dropped connection: an HTTP client may retry a dropped one.
            body = number % 2 == 1 ? good : "{\"mode\":"

        }
        let answer =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: answer))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}

@available(*, unavailable)
extension StubHandler: Sendable {}
