import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// A stand-in for a UMS Server's HTTPS port (8443) behind a `by-path` listener: TLS with
/// `node.pem`, HTTP/1.1 with keep-alive, and a count of the connections it accepted, so tests
/// see node connections reused. What it answers:
/// - `GET /bytes/N` (`/chunked/N`): N bytes, with Content-Length (chunked), written as fast as the
///   connection takes them;
/// - `POST`/`PUT /upload`: reads the body without keeping it and answers `{"received": N}`;
/// - `POST`/`PUT /refuse`: answers `413` on the head, before the body (as a server refusing an
///   upload too large, or a session expired, does), then reads the body and drops it;
/// - anything else: what it saw, as JSON: `node`, `method`, `path`, `request_on_connection`,
///   `x_ssl_cert`, `x_forwarded_for`, `x_forwarded_proto`, `connection`, `upgrade`, `te`.
public final class HTTPSTestNode: Sendable {
    /// One request the node saw.
    public struct Seen: Sendable {
        public var method: String
        public var path: String
        public var headers: [(String, String)]
        /// Which accepted connection carried it (1, 2, ...).
        public var connection: Int
    }

    public let name: String
    public let address: SocketAddress
    private let channel: any Channel
    private let state = NIOLockedValueBox(State())

    private struct State {
        var accepted = 0
        var open = 0
        var seen: [Seen] = []
    }

    private init(name: String, channel: any Channel) throws {
        self.name = name
        self.channel = channel
        guard let address = channel.localAddress else { throw TestKitError("node \(name) has no address") }
        self.address = address
    }

    /// Connections accepted so far.
    public var accepted: Int { state.withLockedValue { $0.accepted } }

    /// Connections open now.
    public var open: Int { state.withLockedValue { $0.open } }

    /// Distinct connections that carried a request.
    public var connectionsUsed: Int { Set(seen.map(\.connection)).count }

    /// Requests seen so far, in order.
    public var seen: [Seen] { state.withLockedValue { $0.seen } }

    /// Starts a node named `name` on `host:port`.
    public static func start(
        name: String, host: String, port: Int, certificates: TestCertificates,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> HTTPSTestNode {
        let context = try NIOSSLContext(
            configuration: .makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(certificates.path("node.pem")).map {
                    .certificate($0)
                },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: certificates.path("node.key"), format: .pem))))
        let box = NIOLockedValueBox<HTTPSTestNode?>(nil)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    guard let node = box.withLockedValue({ $0 }) else { throw TestKitError("node not ready") }
                    let number = node.state.withLockedValue {
                        $0.accepted += 1
                        $0.open += 1
                        return $0.accepted
                    }
                    child.closeFuture.whenComplete { _ in node.state.withLockedValue { $0.open -= 1 } }
                    let sync = child.pipeline.syncOperations
                    try sync.addHandler(NIOSSLServerHandler(context: context))
                    try sync.configureHTTPServerPipeline(withErrorHandling: true)
                    try sync.addHandler(TestNodeHandler(node: node, connection: number))
                }
            }
            .bind(host: host, port: port).get()
        let node = try HTTPSTestNode(name: name, channel: channel)
        box.withLockedValue { $0 = node }
        return node
    }

    fileprivate func record(_ seen: Seen) {
        state.withLockedValue { $0.seen.append(seen) }
    }

    public func stop() async {
        try? await channel.close()
    }
}

/// HTTPS test nodes for the same port on 127.0.0.11, .12, ... as `BackendCluster` starts plain ones.
public struct HTTPSTestCluster: Sendable {
    public var nodes: [HTTPSTestNode]
    public var port: Int

    /// Starts `count` nodes named ums1, ums2, ... sharing one free port.
    public static func start(count: Int, certificates: TestCertificates, firstHost: Int = 11) async throws
        -> HTTPSTestCluster
    {
        var lastError: (any Error)?
        for _ in 0..<5 {
            let port = try FreePort.pick()
            var started: [HTTPSTestNode] = []
            do {
                for index in 0..<count {
                    started.append(
                        try await HTTPSTestNode.start(
                            name: "ums\(index + 1)", host: "127.0.0.\(firstHost + index)", port: port,
                            certificates: certificates))
                }
                return HTTPSTestCluster(nodes: started, port: port)
            } catch {
                lastError = error
                for node in started { await node.stop() }
            }
        }
        throw lastError ?? TestKitError("no free port for the nodes")
    }

    public func node(_ name: String) -> HTTPSTestNode {
        nodes.first { $0.name == name }!
    }

    /// Connections all nodes accepted.
    public var accepted: Int { nodes.map(\.accepted).reduce(0, +) }

    public func stop() async {
        for node in nodes { await node.stop() }
    }
}

private final class TestNodeHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let node: HTTPSTestNode
    private let connection: Int
    private var head: HTTPRequestHead?
    private var received = 0
    private var requests = 0
    /// The request was answered on its head: its body is read and dropped.
    private var answeredEarly = false
    /// A download in progress: bytes still to write.
    private var remaining = 0
    private var downloading = false
    private var keepAlive = true

    init(node: HTTPSTestNode, connection: Int) {
        self.node = node
        self.connection = connection
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            received = 0
            requests += 1
            node.record(
                HTTPSTestNode.Seen(
                    method: head.method.rawValue, path: head.uri, headers: head.headers.map { ($0.name, $0.value) },
                    connection: connection))
            if head.uri == "/refuse" {
                answeredEarly = true
                refuse(head, context: context)
            }
        case .body(let buffer):
            received += buffer.readableBytes
        case .end:
            guard let head else { return }
            self.head = nil
            if answeredEarly {
                answeredEarly = false
                return
            }
            answer(head, context: context)
        }
    }

    private func refuse(_ request: HTTPRequestHead, context: ChannelHandlerContext) {
        respond(
            ["node": node.name, "refused": true], status: .payloadTooLarge, startAnswer(to: request), to: request,
            context: context)
    }

    /// Notes whether the connection stays open after the answer to `request`; the headers saying so.
    private func startAnswer(to request: HTTPRequestHead) -> HTTPHeaders {
        keepAlive = request.isKeepAlive
        var headers = HTTPHeaders()
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        return headers
    }

    private func answer(_ request: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = request.uri.split(separator: "?").first.map(String.init) ?? request.uri
        var headers = startAnswer(to: request)
        let parts = path.split(separator: "/")
        if parts.count == 2, parts[0] == "bytes" || parts[0] == "chunked", let size = Int(parts[1]) {
            if parts[0] == "bytes" {
                headers.add(name: "Content-Length", value: String(size))
            } else {
                headers.add(name: "Transfer-Encoding", value: "chunked")
            }
            context.write(
                wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: .ok, headers: headers))),
                promise: nil)
            remaining = size
            downloading = true
            writeMore(context: context)
            return
        }
        var object: [String: Any] = [
            "node": node.name, "method": request.method.rawValue, "path": request.uri,
            "request_on_connection": requests, "connection": connection,
        ]
        for name in ["x-ssl-cert", "x-forwarded-for", "x-forwarded-proto", "connection", "upgrade", "te"] {
            let values = request.headers[name]
            object[name.replacingOccurrences(of: "-", with: "_")] =
                values.isEmpty ? NSNull() : values.joined(separator: ",")
        }
        if path == "/upload" { object = ["node": node.name, "received": received] }
        respond(object, status: .ok, headers, to: request, context: context)
    }

    /// Answers `request` with `object` as JSON, then ends the answer.
    private func respond(
        _ object: [String: Any], status: HTTPResponseStatus, _ headers: HTTPHeaders, to request: HTTPRequestHead,
        context: ChannelHandlerContext
    ) {
        var headers = headers
        let body = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(body.count))
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))),
            promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
        finish(context: context)
    }

    private func writeMore(context: ChannelHandlerContext) {
        // Flushed chunk by chunk: TLS holds unflushed writes where the channel's writability does not see them.
        while remaining > 0, context.channel.isWritable {
            let size = min(remaining, 64 * 1024)
            remaining -= size
            context.writeAndFlush(
                wrapOutboundOut(.body(.byteBuffer(ByteBuffer(repeating: UInt8(ascii: "x"), count: size)))), promise: nil
            )
        }
        // Flushing may make the channel writable again and get here re-entered: the end goes once.
        if remaining == 0, downloading {
            downloading = false
            finish(context: context)
        }
    }

    private func finish(context: ChannelHandlerContext) {
        let keepAlive = self.keepAlive
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, remaining > 0 { writeMore(context: context) }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension TestNodeHandler: Sendable {}
