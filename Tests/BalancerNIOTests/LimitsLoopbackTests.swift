import BalancerCore
import BalancerNIO
import BalancerTesting
import NIOCore
import NIOPosix
import Testing

/// Passive health and connection limits on real loopback sockets, over both executors.
@Suite(.timeLimit(.minutes(1)))
struct LimitsLoopbackTests {
    /// One request on its own connection; returns what came back and the connection's log line.
    func echo(_ balancer: RunningBalancer, _ text: String) async throws -> String {
        let connection = try await TestClient.connect(to: try balancer.address())
        return try await connection.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: text))
            outbound.finish()
            return String(buffer: try await TestClient.readAll(inbound))
        }
    }

    /// The first line a node greets with, on a connection left open.
    func greeted(
        _ balancer: RunningBalancer, on listener: String = "devices"
    ) async throws -> (TestClient.Connection, String?) {
        let connection = try await TestClient.connect(to: try balancer.address(listener))
        var iterator = connection.inbound.makeAsyncIterator()
        return (connection, try await TestClient.readLine(&iterator))
    }

    func waitForLog(_ balancer: RunningBalancer, _ count: Int, timeout: Duration = .seconds(10)) async throws {
        try await balancer.waitForAccessLog(count, timeout: timeout)
    }

    /// Round robin over `behaviours`, three failures in a row taking a node out of rotation.
    func startWithPassiveHealth(
        _ behaviours: [TestBackend.Behavior], _ dataPath: DataPath
    ) async throws -> (BackendCluster, RunningBalancer) {
        let cluster = try await BackendCluster.start(behaviours)
        let balancer = try await RunningBalancer.start(dataPath: dataPath, balance: .roundRobin, cluster: cluster) {
            $0.health.passive.failures = 3
            // Long enough to outlast the test on a loaded machine (its return is a core test).
            $0.health.passive.ejection = .seconds(60)
        }
        return (cluster, balancer)
    }

    /// ums1 accepts and closes at once (a server going down), or closes on the client's bytes,
    /// which ums2 then answers: either way ums1 is at fault.
    @Test(arguments: DataPath.allCases, [TestBackend.Behavior.closeAtOnce, .closeOnFirstBytes])
    func aNodeThatClosesWithoutAnsweringIsTakenOutOfRotation(
        _ dataPath: DataPath, _ silence: TestBackend.Behavior
    ) async throws {
        let (cluster, balancer) = try await startWithPassiveHealth([silence, .echo], dataPath)
        // Its status probe (a TCP connect here) keeps saying up: only the connections show it.
        for index in 0..<12 { #expect(try await echo(balancer, "request \(index)") == "request \(index)") }
        try await waitForLog(balancer, 12)
        // Round robin would send every other connection to ums1 first (6 hand-ons of 12): after
        // three it is out of rotation.
        #expect(balancer.accessLog.filter { $0.metadata["retries"] == "1" }.count == 3, "\(balancer.accessLog)")
        let ejection = try #require(balancer.logs.records("passive health: node out of rotation").first)
        #expect(ejection.metadata["node"] == "ums1")
        #expect(ejection.metadata["failures"] == "3")
        #expect(balancer.balancer.directory.isEjected("ums1"))
        #expect(!balancer.balancer.directory.isEjected("ums2"))
        #expect(balancer.balancer.directory.status(of: "ums1")?.health == .up)
        try await balancer.stop()
        #expect(balancer.accessLog.allSatisfy { $0.metadata["outcome"] == "closed" }, "no client noticed")
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases)
    func aNodeIsHeldToAccountWhenAnotherAnswersNotWhenTheConnectionEnds(_ dataPath: DataPath) async throws {
        // Device connections last hours: passive health hears of ums1 as soon as ums2 answers
        // what ums1 closed on, while the connections are still open.
        let (cluster, balancer) = try await startWithPassiveHealth([.closeOnFirstBytes, .echo], dataPath)
        var open: [TestClient.Connection] = []
        for index in 0..<6 {
            let connection = try await TestClient.connect(to: try balancer.address())
            try await connection.outbound.write(ByteBuffer(string: "request \(index)\n"))
            var iterator = connection.inbound.makeAsyncIterator()
            #expect(try await TestClient.readLine(&iterator) == "request \(index)")
            open.append(connection)
        }
        #expect(balancer.accessLog.isEmpty, "every connection is still open")
        #expect(balancer.balancer.directory.isEjected("ums1"))
        for connection in open { await TestClient.close(connection) }
        try await balancer.stop()
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases)
    func bytesEveryNodeClosesOnNeverTakeANodeOutOfRotation(_ dataPath: DataPath) async throws {
        // What junk sent to a TLS port gets: every node closes without a byte. That says something
        // about the client, not the nodes: no number of such clients may take healthy nodes out
        // of rotation (before, each of these connections counted against both nodes).
        let (cluster, balancer) = try await startWithPassiveHealth([.closeOnFirstBytes, .closeOnFirstBytes], dataPath)
        for index in 0..<6 { #expect(try await echo(balancer, "junk \(index)") == "") }
        try await waitForLog(balancer, 6)
        #expect(
            balancer.accessLog.filter { $0.metadata["retries"] == "1" }.count == 6,
            "each client was still handed to the other node: \(balancer.accessLog)")
        #expect(balancer.logs.records("passive health: node out of rotation").isEmpty)
        #expect(!balancer.balancer.directory.isEjected("ums1"))
        #expect(!balancer.balancer.directory.isEjected("ums2"))
        try await balancer.stop()
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases)
    func clientsThatConnectAndCloseNeverTakeANodeOutOfRotation(_ dataPath: DataPath) async throws {
        // What a front balancer's TCP check, a port scan or a device giving up does: connect, send
        // nothing, close. The node closes in answer, without a byte: that is not its failure.
        let (cluster, balancer) = try await startWithPassiveHealth([.echo, .echo], dataPath)
        for _ in 0..<6 {
            let connection = try await TestClient.connect(to: try balancer.address())
            try await connection.executeThenClose { inbound, outbound in
                outbound.finish()
                let answer = try await TestClient.readAll(inbound)
                #expect(answer.readableBytes == 0)
            }
        }
        try await waitForLog(balancer, 6)
        #expect(balancer.logs.records("passive health: node out of rotation").isEmpty)
        #expect(!balancer.balancer.directory.isEjected("ums1") && !balancer.balancer.directory.isEjected("ums2"))
        // Each went to one node, as round robin has it, and was not handed on to the other.
        #expect(balancer.accessLog.allSatisfy { $0.metadata["retries"] == nil }, "\(balancer.accessLog)")
        #expect(Set(balancer.accessLog.compactMap { $0.metadata["node"] }) == ["ums1", "ums2"])
        #expect(try await echo(balancer, "still served") == "still served")
        try await balancer.stop()
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases)
    func aListenerAtItsMaxConnectionsRefusesTheNextAtOnceAndSaysWhy(_ dataPath: DataPath) async throws {
        let cluster = try await BackendCluster.start([.greetThenEcho])
        let balancer = try await RunningBalancer.start(dataPath: dataPath, cluster: cluster) {
            $0.listeners[0].maxConnections = 2
        }
        let first = try await greeted(balancer)
        let second = try await greeted(balancer)
        #expect(first.1 == "ums1" && second.1 == "ums1")
        let third = try await greeted(balancer)
        #expect(third.1 == nil, "closed without a byte")
        try await waitForLog(balancer, 1)
        let refusal = try #require(balancer.accessLog.first)
        #expect(refusal.metadata["outcome"] == "refused")
        #expect(refusal.metadata["reason"]?.contains("max_connections") == true)
        for connection in [first.0, second.0, third.0] { await TestClient.close(connection) }
        try await waitForLog(balancer, 3)
        let again = try await greeted(balancer)
        #expect(again.1 == "ums1", "room again once connections closed")
        await TestClient.close(again.0)
        try await balancer.stop()
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases)
    func theBalancerAtItsMaxConnectionsRefusesOnEveryListenerSaysWhyAndCountsIt(_ dataPath: DataPath) async throws {
        _ = counted("ums_balancer_refusals_total", [:])  // swift-metrics reports to the registry from here on
        // Listener names of this run only: the registry is the process's, shared by parallel tests.
        let (devices, console) = ("devices-\(dataPath)", "console-\(dataPath)")
        let cluster = try await BackendCluster.start([.greetThenEcho])
        let balancer = try await RunningBalancer.start(
            dataPath: dataPath, listeners: [(devices, .device), (console, .console)], cluster: cluster
        ) {
            $0.limits.maxConnections = 2
        }
        // Below the limit both are served, one per listener (neither has a limit of its own).
        let first = try await greeted(balancer, on: devices)
        let second = try await greeted(balancer, on: console)
        #expect(first.1 == "ums1" && second.1 == "ums1")
        // At the balancer's limit the next is closed at once on either listener.
        let third = try await greeted(balancer, on: devices)
        let fourth = try await greeted(balancer, on: console)
        #expect(third.1 == nil && fourth.1 == nil, "closed without a byte")
        try await waitForLog(balancer, 2)
        let refusals = balancer.accessLog.filter { $0.metadata["outcome"] == "refused" }
        #expect(Set(refusals.compactMap { $0.metadata["listener"] }) == [devices, console], "\(balancer.accessLog)")
        #expect(
            refusals.allSatisfy { $0.metadata["reason"]?.contains("limits.max_connections") == true },
            "\(refusals)")
        for listener in [devices, console] {
            #expect(
                counted("ums_balancer_refusals_total", ["listener": listener, "reason": "max-connections"]) == 1,
                "\(listener)")
        }
        // Room again once one closes.
        await TestClient.close(first.0)
        try await waitForLog(balancer, 3)
        let again = try await greeted(balancer, on: devices)
        #expect(again.1 == "ums1")
        for connection in [second.0, third.0, fourth.0, again.0] { await TestClient.close(connection) }
        try await balancer.stop()
        #expect(counted("ums_balancer_refusals_total", ["listener": devices]) == 1, "only the one over the limit")
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases)
    func newConnectionsBeyondTheListenersRateAreRefused(_ dataPath: DataPath) async throws {
        let cluster = try await BackendCluster.start([.echo])
        let balancer = try await RunningBalancer.start(dataPath: dataPath, cluster: cluster) {
            $0.listeners[0].maxConnectionRate = 3
        }
        // Eight at once: the bucket holds three, and refills by three a second.
        let answers = await withTaskGroup(of: String.self) { group in
            for index in 0..<8 {
                // A refused client that already sent its request may see a reset rather than an EOF.
                group.addTask { (try? await echo(balancer, "r\(index)")) ?? "" }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(answers.filter { !$0.isEmpty }.count >= 3)
        #expect(answers.filter(\.isEmpty).count >= 3, "\(answers)")
        try await balancer.stop()
        #expect(balancer.accessLog.contains { $0.metadata["reason"]?.contains("max_connection_rate") == true })
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases)
    func aConnectionOverANodesLimitWaitsForASlotAndIsServedWhenOneFrees(_ dataPath: DataPath) async throws {
        let cluster = try await BackendCluster.start([.greetThenEcho])
        let balancer = try await RunningBalancer.start(dataPath: dataPath, cluster: cluster) {
            $0.nodes[0].maxConnections = 1
            $0.limits.queueTimeout = .seconds(10)
        }
        let first = try await greeted(balancer)
        #expect(first.1 == "ums1")
        let waiting = Task { try await greeted(balancer) }
        try await Task.sleep(for: .milliseconds(300))
        #expect(balancer.accessLog.isEmpty, "the second waits, not refused")
        await TestClient.close(first.0)
        let second = try await waiting.value
        #expect(second.1 == "ums1", "served once the slot freed")
        await TestClient.close(second.0)
        try await balancer.stop()
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases)
    func aConnectionThatWaitsLongerThanTheQueueTimeoutIsRefusedWithItsReason(_ dataPath: DataPath) async throws {
        let cluster = try await BackendCluster.start([.greetThenEcho])
        let balancer = try await RunningBalancer.start(dataPath: dataPath, cluster: cluster) {
            $0.nodes[0].maxConnections = 1
            $0.limits.queueTimeout = .milliseconds(300)
        }
        let first = try await greeted(balancer)
        let started = ContinuousClock.now
        let second = try await greeted(balancer)
        #expect(second.1 == nil)
        #expect(ContinuousClock.now - started >= .milliseconds(250))
        try await waitForLog(balancer, 1)
        #expect(balancer.accessLog.first?.metadata["reason"]?.contains("queue-timeout") == true)
        await TestClient.close(first.0)
        await TestClient.close(second.0)
        try await balancer.stop()
        await cluster.stop()
    }
}
