import BalancerTesting
import Foundation
import NIOCore
import Testing

/// Two balancer hosts sharing one virtual address with keepalived (VRRP), in network namespaces:
/// the setup IGEL's sizing guides describe, tested for real. No state passes between the two
/// balancers: each derives the nodes and the update from the nodes themselves.
@Suite(.timeLimit(.minutes(5)))
struct TwoBalancersTests {
    static let newVersion = "12.07.100"
    static let balancerBinary = ProcessHarness.productsDirectory.appendingPathComponent("ums-balancer").path

    /// One balancer host: its namespace, address, balancer and keepalived.
    final class Host: @unchecked Sendable {
        let name: String
        let namespace: String
        let address: String
        let config: String
        var balancer: ProcessHarness?
        var keepalived: ProcessHarness?

        init(name: String, namespace: String, address: String, config: String) {
            self.name = name
            self.namespace = namespace
            self.address = address
            self.config = config
        }

        /// Starts the balancer (again, as systemd would after a crash) and waits until it serves.
        func startBalancer() async throws {
            let process = try await ProcessHarness(
                path: URL(fileURLWithPath: "/usr/sbin/ip"),
                TestNetwork.inNamespace(namespace, TwoBalancersTests.balancerBinary, ["run", "--config", config]))
            balancer = process
            try await process.waitForOutput("listener=consoles")
        }

        func stop() async {
            for process in [keepalived, balancer].compactMap({ $0 }) { await process.terminate() }
        }
    }

    func balancerConfig(_ cluster: NodeProcessCluster, admin: String, token: String) -> String {
        """
        listeners:
          - { name: devices, bind: 0.0.0.0:30001, backend_port: \(cluster.devicePort), class: device }
          - { name: consoles, bind: 0.0.0.0:8443, backend_port: \(cluster.consolePort), class: console, balance: source }
        nodes:
        \(cluster.nodesYAML)
        health: { interval: 200ms, timeout: 1s, rise: 1, fall: 2 }
        status: { url: "\(cluster.statusURL)" }
        reconnect: { url: "\(cluster.reconnectURL)", timeout: 30s, retries: 3 }
        update: { drain_timeout: 1s, slow_start: 1s }
        admin: { bind: "\(admin):9900", token_file: \(token) }
        shutdown_grace: 1s
        threads: 2
        """
    }

    /// The shipped example's settings, on this network (unicast VRRP between the two hosts).
    func keepalivedConfig(_ host: Host, peer: String, priority: Int, virtual: String) -> String {
        """
        global_defs {
            router_id lb-\(host.name)
            enable_script_security
            script_user root
        }
        vrrp_script chk_ums_balancer {
            script "\(Self.balancerBinary) health --quiet --config \(host.config)"
            interval 1
            timeout 2
            fall 2
            rise 2
        }
        vrrp_instance UMS_BALANCER {
            state BACKUP
            interface eth0
            virtual_router_id 51
            priority \(priority)
            advert_int 1
            nopreempt
            unicast_src_ip \(host.address)
            unicast_peer {
                \(peer)
            }
            virtual_ipaddress {
                \(virtual)/24 dev eth0
            }
            track_script {
                chk_ums_balancer
            }
        }

        """
    }

    @Test func keepalivedMovesTheAddressOnAKilledBalancerAndBothFollowOneUpdate() async throws {
        let network = try await TestNetwork.create(serverAddresses: [11, 12], clientAddresses: Array(11...16))
        var hosts: [Host] = []
        var cluster: NodeProcessCluster?
        do {
            try await scenario(network, hosts: &hosts, cluster: &cluster)
        } catch {
            for host in hosts { await host.stop() }
            await cluster?.stop()
            await network.remove()
            throw error
        }
        for host in hosts { await host.stop() }
        await cluster?.stop()
        await network.remove()
    }

    func scenario(_ network: TestNetwork, hosts: inout [Host], cluster clusterOut: inout NodeProcessCluster?)
        async throws
    {
        let cluster = try await NodeProcessCluster.start(
            count: 2, reconnectSeconds: 3, hosts: [network.lan(11), network.lan(12)], namespace: network.hub,
            // As a server shutting down does, ums1 keeps serving a moment after it accepted its
            // reconnect: both balancers call it in that moment (the second is told 200).
            extraArguments: ["ums1": ["--reconnect-delay", "1.5"]])
        clusterOut = cluster
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let token = try dir.write("admin.token", "two-balancers-test-token\n")
        _ = try await ProcessHarness.runProgram(at: "/bin/chmod", ["600", token])
        let virtual = network.lan(10)
        for name in ["a", "b"] {
            let address = network.address(of: name)
            let config = try dir.write("\(name).yaml", balancerConfig(cluster, admin: address, token: token))
            hosts.append(Host(name: name, namespace: network.hosts[name]!, address: address, config: config))
        }
        for host in hosts { try await host.startBalancer() }
        for (host, peer, priority) in [(hosts[0], hosts[1], 150), (hosts[1], hosts[0], 100)] {
            let config = try dir.write(
                "keepalived-\(host.name).conf",
                keepalivedConfig(host, peer: peer.address, priority: priority, virtual: virtual))
            host.keepalived = try await ProcessHarness(
                path: URL(fileURLWithPath: "/usr/sbin/ip"),
                TestNetwork.inNamespace(
                    host.namespace, "/usr/sbin/keepalived",
                    [
                        "--dont-fork", "--log-console", "--vrrp", "-f", config,
                        "-p", dir.url.appending(path: "keepalived-\(host.name).pid").path,
                        "-r", dir.url.appending(path: "vrrp-\(host.name).pid").path,
                    ]))
        }
        let first = try await holder(of: virtual, among: hosts, network: network, within: .seconds(30))

        // Devices talk to the virtual address.
        let load = DeviceLoad.start(
            address: try SocketAddress(ipAddress: virtual, port: 30001), pause: .milliseconds(20))
        try await waitUntil("devices are served through \(virtual)", timeout: .seconds(20)) {
            load.summary.served >= 20
        }

        // kill -9 of the balancer holding the address: keepalived's health check moves it.
        let killed = ContinuousClock.now
        first.balancer?.send(SIGKILL)
        _ = try await first.balancer?.waitForExit()
        let second = try await holder(
            of: virtual, among: hosts.filter { $0 !== first }, network: network, within: .seconds(20))
        let moved = ContinuousClock.now - killed
        let servedAtMove = load.summary.served
        try await waitUntil("devices recover on their own", timeout: .seconds(20)) {
            load.summary.served >= servedAtMove + 20
        }
        let recovered = ContinuousClock.now - killed
        let failuresAfterKill = load.summary.failures.count
        print(
            "two balancers: the address moved \(moved) after kill -9 of \(first.name)'s balancer;"
                + " devices served again \(recovered) after it; \(failuresAfterKill) failed requests meanwhile")
        #expect(moved < .seconds(10), "the address took \(moved) to move")
        #expect(recovered < .seconds(15), "devices took \(recovered) to be served again")

        // systemd restarts the killed balancer; it does not take the address back (nopreempt).
        try await first.startBalancer()
        try await waitUntil("both balancers are healthy", timeout: .seconds(20)) {
            let firstHealthy = await self.healthy(first)
            let secondHealthy = await self.healthy(second)
            return firstHealthy && secondHealthy
        }
        #expect(try await network.holds(virtual, in: second.namespace))

        // Console affinity: the same client address reaches the same node through either balancer.
        for source in 11...16 {
            let through = try await hosts.asyncMap { host in
                try await self.consoleNode(from: network.client(source), to: host.address)
            }
            #expect(through[0] == through[1], "client \(network.client(source)): \(through)")
        }

        // One rolling update, followed by both: both call the reconnect, the node answers 202 and 200.
        try await cluster.install("ums1", version: Self.newVersion, seconds: 0.3)
        try await cluster.waitFor("ums1", mode: "update", version: Self.newVersion)
        for host in hosts {
            try await waitForStatus(host, token: token, "\(host.name) sees ums1 in update mode") { status in
                self.node("ums1", in: status)?["mode"] as? String == "update"
            }
        }
        try await cluster.install("ums2", version: Self.newVersion, seconds: 0.3)
        var finals: [[String: Any]] = []
        for host in hosts {
            finals.append(
                try await waitForStatus(host, token: token, "\(host.name) completes the run", timeout: .seconds(40)) {
                    ($0["update"] as? [String: Any])?["state"] as? String == "completed"
                })
        }
        let updates = finals.map { $0["update"] as? [String: Any] ?? [:] }
        #expect(updates.allSatisfy { $0["target_version"] as? String == Self.newVersion }, "\(updates)")
        #expect(updates.allSatisfy { $0["starting_version"] as? String == "12.06.100" }, "\(updates)")
        let answers = updates.map {
            (($0["reconnects"] as? [String: Any])?["ums1"] as? [String: Any])?["last_answer"] as? String ?? "none"
        }
        #expect(
            answers.sorted() == ["HTTP 200", "HTTP 202"],
            "the reconnect of ums1 as each balancer saw it: \(answers) \(updates)")

        let summary = await load.stop()
        #expect(summary.served > 50)
        #expect(
            summary.failures.count == failuresAfterKill,
            "no device request failed after the failover: \(summary.failures.suffix(5))")
    }

    // MARK: - Helpers

    /// The host that holds `address`, once one does.
    func holder(of address: String, among hosts: [Host], network: TestNetwork, within timeout: Duration) async throws
        -> Host
    {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            for host in hosts where try await network.holds(address, in: host.namespace) { return host }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestKitError("no balancer host took \(address) within \(timeout)")
    }

    func healthy(_ host: Host) async -> Bool {
        let address = try? SocketAddress(ipAddress: host.address, port: 9900)
        guard let address, let answer = try? await TestHTTP.request("GET", "/healthz", to: address) else {
            return false
        }
        return answer.status == 200
    }

    /// The node a console login from `source` lands on through the balancer at `balancer`.
    func consoleNode(from source: String, to balancer: String) async throws -> String {
        let connection = try await TestClient.connect(
            to: try SocketAddress(ipAddress: balancer, port: 8443), from: try SocketAddress(ipAddress: source, port: 0))
        let raw = try await connection.executeThenClose { inbound, outbound in
            try await outbound.write(
                ByteBuffer(
                    string:
                        "POST /console/login HTTP/1.1\r\nHost: ums\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")
            )
            return try await TestClient.readAll(inbound)
        }
        let answer = try TestHTTP.parse(String(buffer: raw))
        guard answer.status == 200, let node = answer.json?["node"] as? String else {
            throw TestKitError("console login from \(source) through \(balancer): \(answer.status) \(answer.body)")
        }
        return node
    }

    func node(_ id: String, in status: [String: Any]) -> [String: Any]? {
        (status["nodes"] as? [[String: Any]])?.first { $0["id"] as? String == id }
    }

    @discardableResult
    func waitForStatus(
        _ host: Host, token: String, _ what: String, timeout: Duration = .seconds(20),
        _ condition: ([String: Any]) -> Bool
    ) async throws -> [String: Any] {
        let tokenText = try String(contentsOfFile: token, encoding: .utf8).trimmingCharacters(
            in: .whitespacesAndNewlines)
        let address = try SocketAddress(ipAddress: host.address, port: 9900)
        let deadline = ContinuousClock.now + timeout
        var last = ""
        while ContinuousClock.now < deadline {
            if let answer = try? await TestHTTP.request(
                "GET", "/status", to: address, headers: [("Authorization", "Bearer \(tokenText)")]),
                let status = answer.json
            {
                if condition(status) { return status }
                last = answer.body
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestKitError("\(what) never happened: \(last)")
    }

    func waitUntil(_ what: String, timeout: Duration, _ condition: () async -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestKitError("\(what): not within \(timeout)")
    }
}

extension Array {
    fileprivate func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var mapped: [T] = []
        for element in self { mapped.append(try await transform(element)) }
        return mapped
    }
}
