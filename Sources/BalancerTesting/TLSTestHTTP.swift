import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

/// HTTP/1.1 over TLS for tests, as an IGEL OS 12 device (with its client certificate) or a console would talk.
public enum TLSTestHTTP {
    /// A client context trusting the development CA; with `clientCertificate`, it presents `device.pem`.
    public static func context(
        _ certificates: TestCertificates, clientCertificate: Bool = true, verifyServer: Bool = true,
        clientIdentity: TestCertificates? = nil
    ) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .file(certificates.path("ca.pem"))
        if !verifyServer { configuration.certificateVerification = .none }
        if clientCertificate {
            // The device certificate of `clientIdentity`'s CA, to present one that CA did not issue.
            let identity = clientIdentity ?? certificates
            configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(identity.path("device.pem")).map {
                .certificate($0)
            }
            configuration.privateKey = .privateKey(
                try NIOSSLPrivateKey(file: identity.path("device.key"), format: .pem))
        }
        return try NIOSSLContext(configuration: configuration)
    }

    /// A TLS connection to `address`; `serverName` nil sends no SNI (a client connecting by IP address).
    /// `preamble` goes on the wire before the handshake (a front balancer's PROXY header).
    public static func connect(
        to address: SocketAddress, context: NIOSSLContext, serverName: String? = "ums.example.com",
        preamble: [UInt8] = []
    ) async throws -> TestClient.Connection {
        let (connection, handshake) = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(to: address) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handshake = channel.eventLoop.makePromise(of: Void.self)
                    if !preamble.isEmpty {
                        try channel.pipeline.syncOperations.addHandler(ConnectionPreamble(preamble))
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        NIOSSLClientHandler(context: context, serverHostname: serverName))
                    try channel.pipeline.syncOperations.addHandler(HandshakeWatcher(done: handshake))
                    return (try TestClient.Connection(wrappingChannelSynchronously: channel), handshake.futureResult)
                }
            }
        do {
            try await handshake.get()
        } catch {
            try? await connection.channel.close()
            throw error
        }
        return connection
    }

    /// The server certificate a connection was handshaken with.
    public static func serverCertificate(of connection: TestClient.Connection) async throws -> NIOSSLCertificate? {
        try await connection.channel.nioSSL_peerCertificate().get()
    }

    /// Sends one request on a new TLS connection and reads the whole answer.
    public static func request(
        _ method: String, _ path: String, to address: SocketAddress, context: NIOSSLContext,
        serverName: String? = "ums.example.com", headers: [(String, String)] = [], body: String = "",
        preamble: [UInt8] = []
    ) async throws -> TestHTTP.Response {
        let connection = try await connect(to: address, context: context, serverName: serverName, preamble: preamble)
        return try await exchange(method, path, on: connection, headers: headers, body: body)
    }

    /// Sends one request with `Connection: close` on an open connection, reads the answer until
    /// the server closes, and closes.
    public static func exchange(
        _ method: String, _ path: String, on connection: TestClient.Connection,
        headers: [(String, String)] = [], body: String = ""
    ) async throws -> TestHTTP.Response {
        let head =
            "\(method) \(path) HTTP/1.1\r\nHost: ums\r\nConnection: close\r\nContent-Length: \(body.utf8.count)\r\n"
            + headers.map { "\($0.0): \($0.1)\r\n" }.joined() + "\r\n"
        let raw = try await connection.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: head + body))
            return await readUntilClosed(inbound)
        }
        return try TestHTTP.parse(String(buffer: raw))
    }

    /// Everything until the peer closes; a close without TLS close_notify ends the read too.
    public static func readUntilClosed(_ inbound: NIOAsyncChannelInboundStream<ByteBuffer>) async -> ByteBuffer {
        var received = ByteBuffer()
        do {
            for try await var chunk in inbound { received.writeBuffer(&chunk) }
        } catch {}
        return received
    }
}

/// Completes a promise when the TLS handshake is done, or fails it with the handshake's error.
private final class HandshakeWatcher: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let done: EventLoopPromise<Void>

    init(done: EventLoopPromise<Void>) {
        self.done = done
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent { done.succeed() }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        done.fail(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        done.fail(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }
}

@available(*, unavailable)
extension HandshakeWatcher: Sendable {}
