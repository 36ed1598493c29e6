import BalancerCore
import BalancerNIO
import BalancerTesting
import Foundation
import NIOCore
import Testing

/// PROXY protocol in front of the TLS listener types: the front balancer's header comes before
/// the client's TLS handshake, and the client it names is the one routing and the nodes see.
@Suite(.timeLimit(.minutes(1)))
struct ProxyProtocolTLSTests {
    static let trusted = [AddressRange("127.0.0.0/8")!]

    /// The node console affinity picks for a client at `ip` among `nodes`, all up and normal.
    static func affinityNode(for ip: String, among nodes: [NodeID]) -> NodeID? {
        var table = RoutingTable(nodes: nodes.map { NodeStatus(id: $0, health: .up, mode: .normal) })
        guard case .tryNodes(let order) = table.route(.console, algorithm: .source, clientKey: ip) else { return nil }
        return order.first
    }

    @Test(arguments: DataPath.allCases)
    func aBySNIListenerCompletesTheHandshakeAfterTheHeaderAndKeysAffinityOnItsClient(_ dataPath: DataPath)
        async throws
    {
        let certificates = try await TestCertificates.generate()
        defer { certificates.directory.remove() }
        let port = try FreePort.pick()
        var backends: [any Channel] = []
        for index in 1...3 {
            backends.append(
                try await TLSTestBackend.start(
                    name: "ums\(index)", host: "127.0.0.1\(index)", port: port, certificates: certificates))
        }
        var configuration = BalancerConfiguration(
            listeners: [
                ListenerConfiguration(
                    name: "web", bind: Endpoint(host: "127.0.0.1", port: try FreePort.pick()), backendPort: port,
                    classification: .bySNI(
                        SNIRules(patterns: [.console: ["ums-console.example.com"]], defaultClass: .console)))
            ],
            nodes: (1...3).map { NodeConfiguration(id: "ums\($0)", host: "127.0.0.1\($0)") })
        configuration.listeners[0].proxyProtocolFrom = Self.trusted
        configuration.threads = 2
        configuration.shutdownGrace = .seconds(2)
        let balancer = try await RunningBalancer(configuration: configuration, dataPath: dataPath)
        let context = try TLSTestHTTP.context(certificates, clientCertificate: false, verifyServer: false)

        // Two consoles behind one front balancer that affinity puts on different nodes.
        let nodes = ["ums1", "ums2", "ums3"]
        let candidates = (1...40).map { "203.0.113.\($0)" }
        let first = candidates[0]
        let second = try #require(
            candidates.first { Self.affinityNode(for: $0, among: nodes) != Self.affinityNode(for: first, among: nodes) }
        )
        for ip in [first, second] {
            let header = ProxyProtocolTests.v2Header(client: IPAddressText.parse(ip)!, port: 40000)
            for _ in 0..<3 {
                let connection = try await TLSTestHTTP.connect(
                    to: try balancer.address("web"), context: context, serverName: "ums-console.example.com",
                    preamble: header)
                let greeting = try await connection.executeThenClose { inbound, _ in
                    var iterator = inbound.makeAsyncIterator()
                    return try await TestClient.readLine(&iterator)
                }
                #expect(greeting == Self.affinityNode(for: ip, among: nodes), "\(ip)")
            }
        }
        try await balancer.stop()
        for backend in backends { try? await backend.close() }
        let clients = Set(balancer.accessLog.compactMap { $0.metadata["client"] })
        #expect(clients == ["\(first):40000", "\(second):40000"])
        #expect(balancer.accessLog.allSatisfy { $0.metadata["class"] == "console" })
    }

    @Test func aByPathListenerForwardsTheHeadersClientInXForwardedForReplacingTheClients() async throws {
        let certificates = try await TestCertificates.generate()
        let cluster = try await SimulatedCluster.start(tls: certificates)
        var listener = PathListenerTests.pathListener(
            certificates, port: try FreePort.pick(), backendPort: cluster.consolePort)
        listener.proxyProtocolFrom = Self.trusted
        let balancer = try await RunningBalancer.start(for: cluster) { $0.listeners.append(listener) }
        for node in ["ums1", "ums2", "ums3"] {
            try await balancer.waitUntil(node, "up and normal") { $0.health == .up && $0.mode == .normal }
        }
        let context = try TLSTestHTTP.context(certificates)
        let profile = "/device-connector/device/00E0C5000001/profile"
        let header = ProxyProtocolTests.v2Header(client: [192, 0, 2, 7], port: 51234)
        let answer = try await TLSTestHTTP.request(
            "GET", profile, to: try balancer.address("web"), context: context,
            headers: [("X-Forwarded-For", "198.51.100.66")], preamble: header)
        #expect(answer.status == 200, "\(answer.body)")
        #expect(answer.json?["forwarded_for"] as? String == "192.0.2.7", "\(answer.body)")
        #expect(answer.json?["client_cert"] as? String == "CN=device-00E0C5000001,O=IGEL OS 12 devices")
        // Without a PROXY header, a trusted source is refused before any TLS.
        await #expect(throws: (any Error).self) {
            _ = try await TLSTestHTTP.request("GET", profile, to: try balancer.address("web"), context: context)
        }
        try await balancer.stop()
        await cluster.stop()
        certificates.directory.remove()
        let lines = balancer.accessLog.filter { $0.metadata["listener"] == "web" }
        #expect(lines.contains { $0.metadata["client"] == "192.0.2.7:51234" }, "\(lines.map(\.metadata))")
        #expect(lines.contains { $0.metadata["reason"] == "no PROXY protocol header" }, "\(lines.map(\.metadata))")
    }
}
