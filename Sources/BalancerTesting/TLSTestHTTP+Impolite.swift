import NIOCore
import NIOEmbedded
import NIOPosix
import NIOSSL

extension TLSTestHTTP {
    /// What a client that never answers the server's close_notify saw: the answer, and how long
    /// after its request the server closed the TCP connection.
    public struct ImpoliteExchange: Sendable {
        public var answer: String
        public var closedAfter: Duration
    }

    /// Sends one request over TLS as scripts and many HTTP stacks do: the answer is read, the
    /// server's close_notify is never answered, and the socket stays open until the server closes it.
    ///
    /// The TLS engine runs in an `EmbeddedChannel` pumped by hand over a plain TCP connection, so
    /// nothing the engine writes after the answer (its own close_notify) reaches the server.
    public static func exchangeNeverAnsweringCloseNotify(
        _ request: String, to address: SocketAddress, context: NIOSSLContext, timeout: Duration = .seconds(15)
    ) async throws -> ImpoliteExchange {
        let engine = EmbeddedChannel()
        defer { _ = try? engine.finish() }
        try engine.pipeline.syncOperations.addHandler(
            try NIOSSLClientHandler(context: context, serverHostname: "ums.example.com"))
        let socket = try await TestClient.connect(to: address)
        let deadline = ContinuousClock.now + timeout
        return try await socket.executeThenClose { inbound, outbound in
            var answer = ByteBuffer()
            // Whatever the engine has to send, until the first answer bytes: after them the
            // client has nothing more to say, and its close_notify is what must never arrive.
            func pump() async throws {
                while answer.readableBytes == 0, let bytes = try engine.readOutbound(as: ByteBuffer.self) {
                    try await outbound.write(bytes)
                }
            }
            try await engine.connect(to: address).get()
            // NIOSSL holds application data until its handshake completes.
            engine.writeAndFlush(ByteBuffer(string: request), promise: nil)
            let sent = ContinuousClock.now
            try await pump()
            for try await bytes in inbound {
                guard ContinuousClock.now < deadline else { throw TestKitError("the server never closed") }
                try engine.writeInbound(bytes)
                while var plain = try engine.readInbound(as: ByteBuffer.self) { answer.writeBuffer(&plain) }
                try await pump()
            }
            return ImpoliteExchange(answer: String(buffer: answer), closedAfter: .now - sent)
        }
    }
}
