import BalancerCore
import BalancerNIO
import BalancerTesting
import NIOCore
import NIOPosix
import Testing

/// PROXY protocol on listeners behind a front balancer, over both executors. The headers here are
/// written out byte by byte, not with the balancer's own encoder, so a shared bug cannot hide.
@Suite(.timeLimit(.minutes(1)))
struct ProxyProtocolTests {
    static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    /// A v2 PROXY header naming `client` (IPv4 bytes) port `port` as the source.
    static func v2Header(client: [UInt8], port: UInt16) -> [UInt8] {
        v2Signature + [0x21, 0x11, 0x00, 0x0C] + client + [127, 0, 0, 1] + [UInt8(port >> 8), UInt8(port & 0xFF)]
            + [0x75, 0x31]
    }

    func start(
        _ dataPath: DataPath, trusted: [String] = ["127.0.0.1/32"], sendProxy: Int? = nil,
        behaviors: [TestBackend.Behavior] = [.echo], trafficClass: TrafficClass = .device
    ) async throws -> (BackendCluster, RunningBalancer) {
        let cluster = try await BackendCluster.start(behaviors)
        let balancer = try await RunningBalancer.start(
            dataPath: dataPath, listeners: [("devices", trafficClass)], cluster: cluster
        ) {
            $0.listeners[0].proxyProtocolFrom = trusted.map { AddressRange($0)! }
            $0.listeners[0].sendProxy = sendProxy
        }
        return (cluster, balancer)
    }

    /// Sends `bytes` from `source`, half-closes, and reads everything back ("" when reset).
    func exchange(_ balancer: RunningBalancer, _ bytes: [UInt8], from source: String = "127.0.0.1") async throws
        -> String
    {
        let connection = try await TestClient.connect(
            to: try balancer.address(), from: try SocketAddress(ipAddress: source, port: 0))
        do {
            return try await connection.executeThenClose { inbound, outbound in
                try await outbound.write(ByteBuffer(bytes: bytes))
                outbound.finish()
                return String(buffer: try await TestClient.readAll(inbound))
            }
        } catch {
            return ""
        }
    }

    func waitForLog(_ balancer: RunningBalancer, _ count: Int) async throws {
        try await balancer.waitForAccessLog(count)
    }

    @Test(arguments: DataPath.allCases)
    func theFrontBalancersHeaderNamesTheClientAndNeverReachesTheNode(_ dataPath: DataPath) async throws {
        let (cluster, balancer) = try await start(dataPath)
        let header = Self.v2Header(client: [192, 0, 2, 7], port: 51234)
        #expect(try await exchange(balancer, header + Array("hello".utf8)) == "hello")
        // v1 too.
        #expect(try await exchange(balancer, Array("PROXY TCP4 198.51.100.9 127.0.0.1 4000 30001\r\nhi".utf8)) == "hi")
        try await waitForLog(balancer, 2)
        try await balancer.stop()
        let clients = Set(balancer.accessLog.compactMap { $0.metadata["client"] })
        #expect(clients == ["192.0.2.7:51234", "198.51.100.9:4000"])
        #expect(balancer.accessLog.allSatisfy { $0.metadata["via"]?.hasPrefix("127.0.0.1:") == true })
        #expect(balancer.accessLog.allSatisfy { $0.metadata["outcome"] == "closed" })
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases)
    func consoleAffinityKeysOnTheClientTheHeaderNames(_ dataPath: DataPath) async throws {
        let (cluster, balancer) = try await start(
            dataPath, behaviors: [.greetThenEcho, .greetThenEcho, .greetThenEcho], trafficClass: .console)
        // Two clients the source rule puts on different nodes, both behind the same front balancer.
        let table = RoutingTable(nodes: cluster.nodes.map { NodeStatus(id: $0.id, health: .up, mode: .normal) })
        func node(for ip: String) -> NodeID? {
            var copy = table
            guard case .tryNodes(let order) = copy.route(.console, algorithm: .source, clientKey: ip) else {
                return nil
            }
            return order.first
        }
        let candidates = (1...40).map { "203.0.113.\($0)" }
        let first = candidates[0]
        let second = try #require(candidates.first { node(for: $0) != node(for: first) })
        for ip in [first, second] {
            let bytes = IPAddressText.parse(ip)!
            for _ in 0..<3 {
                let answer = try await exchange(balancer, Self.v2Header(client: bytes, port: 1000) + Array("x".utf8))
                #expect(answer.hasPrefix("\(node(for: ip)!)\n"), "\(ip): \(answer)")
            }
        }
        try await balancer.stop()
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases)
    func aPROXYHeaderFromAnyOtherSourceIsRefusedAndOrdinaryBytesFromThereServed(_ dataPath: DataPath) async throws {
        let (cluster, balancer) = try await start(dataPath)
        let header = Self.v2Header(client: [192, 0, 2, 7], port: 51234)
        #expect(try await exchange(balancer, header + Array("forged".utf8), from: "127.0.0.5") == "")
        #expect(try await exchange(balancer, Array("plain".utf8), from: "127.0.0.5") == "plain")
        try await waitForLog(balancer, 2)
        try await balancer.stop()
        let refused = try #require(balancer.accessLog.first { $0.metadata["outcome"] == "handshake-failed" })
        #expect(refused.metadata["reason"] == "a PROXY header from a source not listed in proxy_protocol.from")
        #expect(
            refused.metadata["node"] == "-" || cluster.backends[0].bytesWritten == 0, "nothing forged reached a node")
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases)
    func aTrustedSourceWithoutAHeaderIsClosed(_ dataPath: DataPath) async throws {
        let (cluster, balancer) = try await start(dataPath)
        #expect(try await exchange(balancer, Array("GET / HTTP/1.1\r\n\r\n".utf8)) == "")
        try await waitForLog(balancer, 1)
        try await balancer.stop()
        #expect(balancer.accessLog.first?.metadata["reason"] == "no PROXY protocol header")
        #expect(balancer.accessLog.first?.metadata["node"] == "-")
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases)
    func sendProxyPutsTheClientInAHeaderBeforeItsBytes(_ dataPath: DataPath) async throws {
        let cluster = try await BackendCluster.start([.echo])
        let balancer = try await RunningBalancer.start(dataPath: dataPath, cluster: cluster) {
            $0.listeners[0].sendProxy = 1
        }
        let connection = try await TestClient.connect(
            to: try balancer.address(), from: try SocketAddress(ipAddress: "127.0.0.7", port: 0))
        let local = try #require(connection.channel.localAddress?.port)
        let listenPort = try #require(try balancer.address().port)
        let echoed = try await connection.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "payload"))
            outbound.finish()
            return String(buffer: try await TestClient.readAll(inbound))
        }
        #expect(echoed == "PROXY TCP4 127.0.0.7 127.0.0.1 \(local) \(listenPort)\r\npayload")
        try await balancer.stop()
        await cluster.stop()
    }
}
