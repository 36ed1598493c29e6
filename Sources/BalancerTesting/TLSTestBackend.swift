import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

/// A TLS-terminating stand-in for a UMS Server's 8443: completes the handshake with its own
/// certificate, then greets with its name and echoes.
public enum TLSTestBackend {
    /// Starts one TLS backend on `host:port`; returns its server channel.
    public static func start(
        name: String, host: String, port: Int, certificates: TestCertificates
    ) async throws -> any Channel {
        let chain = try NIOSSLCertificate.fromPEMFile(certificates.path("node.pem")).map {
            NIOSSLCertificateSource.certificate($0)
        }
        let key = try NIOSSLPrivateKey(file: certificates.path("node.key"), format: .pem)
        let context = try NIOSSLContext(
            configuration: .makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key)))
        return try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                    try channel.pipeline.syncOperations.addHandler(GreetingEcho(name: name))
                }
            }
            .bind(host: host, port: port).get()
    }
}

private final class GreetingEcho: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let name: String

    init(name: String) {
        self.name = name
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent {
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: name + "\n")), promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.writeAndFlush(data, promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension GreetingEcho: Sendable {}

/// A real TLS client (NIOSSL) for tests: verifies the server's chain against a CA and sends a server name.
public enum TLSTestClient {
    /// Connects through `address` with SNI `serverName`, completes the handshake with whatever
    /// node answers, and returns the first line that node sends.
    public static func greeting(from address: SocketAddress, serverName: String, caFile: String) async throws -> String
    {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .file(caFile)
        // The chain is verified; the test nodes' certificate names hosts, not the SNI names used here.
        configuration.certificateVerification = .noHostnameVerification
        let context = try NIOSSLContext(configuration: configuration)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(to: address) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        NIOSSLClientHandler(context: context, serverHostname: serverName))
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, _ in
            var iterator = inbound.makeAsyncIterator()
            return try await TestClient.readLine(&iterator) ?? ""
        }
    }
}
