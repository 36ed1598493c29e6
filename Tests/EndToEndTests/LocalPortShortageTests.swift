import BalancerTesting
import Foundation
import NIOCore
import Testing

/// A balancer host out of ephemeral ports toward its nodes (every one waiting in TIME_WAIT after
/// clients that closed first, as a busy device listener has above ~470 new connections a second to
/// one node address) is the balancer's shortage: no node is taken out of rotation for it, and the
/// log says what ran out. In a namespace of its own whose port range is two ports wide.
@Suite(.timeLimit(.minutes(3)))
struct LocalPortShortageTests {
    static let balancerBinary = ProcessHarness.productsDirectory.appendingPathComponent("ums-balancer").path

    @Test func noLocalPortTowardTheNodesBlamesNoNode() async throws {
        let network = try await TestNetwork.create(serverAddresses: [11, 12])
        var cluster: NodeProcessCluster?
        var balancer: ProcessHarness?
        do {
            try await scenario(network, cluster: &cluster, balancer: &balancer)
        } catch {
            await stop(balancer, cluster, network)
            throw error
        }
        await stop(balancer, cluster, network)
    }

    func scenario(
        _ network: TestNetwork, cluster clusterOut: inout NodeProcessCluster?, balancer: inout ProcessHarness?
    )
        async throws
    {
        let cluster = try await NodeProcessCluster.start(
            count: 2, hosts: [network.lan(11), network.lan(12)], namespace: network.hub)
        clusterOut = cluster
        let host = try #require(network.hosts["a"])
        let range = try await ProcessHarness.runProgram(
            at: "/usr/sbin/ip",
            TestNetwork.inNamespace(host, "/usr/sbin/sysctl", ["-w", "net.ipv4.ip_local_port_range=40000 40001"]))
        try #require(range.status == 0, "cannot narrow the namespace's port range: \(range.output)")
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        // Probed once at start (an hour apart after that): the probes' own ports stay free.
        let config = try dir.write(
            "b.yaml",
            """
            listeners:
              - { name: devices, bind: 0.0.0.0:30001, backend_port: \(cluster.devicePort), class: device, balance: round-robin }
            nodes:
            \(cluster.nodesYAML)
            health: { interval: 1h, rise: 1, passive: { failures: 3, ejection: 10m, max_ejection: 10m } }
            status: { url: "\(cluster.statusURL)" }
            """)
        let process = try await ProcessHarness(
            path: URL(fileURLWithPath: "/usr/sbin/ip"),
            TestNetwork.inNamespace(host, Self.balancerBinary, ["run", "--config", config]))
        balancer = process
        try await process.waitForOutput("listener=devices")
        // Both up and normal before the first client, so round robin shares them out evenly.
        for node in ["ums1", "ums2"] { try await process.waitForOutput("up mode=unknown -> normal node=\(node)") }
        let address = try SocketAddress(ipAddress: network.address(of: "a"), port: 30001)
        // Clients that connect and close: each node closes in answer, and the balancer's socket
        // toward it, which sent its FIN first, waits in TIME_WAIT. Two ports per node: the first
        // four connections take them all; the next four find none.
        for index in 0..<8 {
            let connection = try await TestClient.connect(to: address)
            await TestClient.close(connection)
            try await process.waitForOutput("outcome=", count: index + 1, timeout: .seconds(10))
        }
        let lines = process.output.split(separator: "\n")
        let short = lines.filter { $0.contains("no local port free toward the node") }
        #expect(short.count == 4, "\(process.output)")
        #expect(!process.output.contains("out of rotation"), "\(process.output)")
    }

    func stop(_ balancer: ProcessHarness?, _ cluster: NodeProcessCluster?, _ network: TestNetwork) async {
        await balancer?.terminate()
        await cluster?.stop()
        await network.remove()
    }
}
