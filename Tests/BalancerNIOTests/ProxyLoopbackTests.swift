import BalancerCore
import BalancerTesting
import NIOCore
import NIOPosix
import Testing

@testable import BalancerNIO

/// The data path on real loopback sockets: what a device would notice, or must not.
@Suite(.timeLimit(.minutes(1)))
struct ProxyLoopbackTests {
    /// Sends `count` requests, one connection each, half-closing after each; every one must come back.
    func expectEchoes(through balancer: RunningBalancer, count: Int) async throws {
        for index in 0..<count {
            let connection = try await TestClient.connect(to: try balancer.address())
            let answer = try await connection.executeThenClose { inbound, outbound in
                try await outbound.write(ByteBuffer(string: "request \(index)"))
                outbound.finish()
                return String(buffer: try await TestClient.readAll(inbound))
            }
            #expect(answer == "request \(index)")
        }
    }

    @Test(arguments: DataPath.allCases) func theExecutorAskedForCarriesTheConnections(_ dataPath: DataPath) async throws
    {
        let cluster = try await BackendCluster.start([.echo])
        let balancer = try await RunningBalancer.start(dataPath: dataPath, cluster: cluster)
        try await expectEchoes(through: balancer, count: 1)
        #if os(Linux)
        #expect(balancer.balancer.relayIsRunning == (dataPath == .automatic))
        #else
        #expect(!balancer.balancer.relayIsRunning)
        #endif
        try await balancer.stop()
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases) func anIPv6ClientReachesAnIPv6NodeOnTheExecutorAskedFor(
        _ dataPath: DataPath
    ) async throws {
        // A site on IPv6: the listener bound to [::1], the node at ::1; the relay's sockaddr_in6 paths.
        let node = try await TestBackend.start(name: "ums1", host: "::1", port: try FreePort.pick(), behavior: .echo)
        let cluster = BackendCluster(backends: [node], port: node.address.port!)
        let balancer = try await RunningBalancer.start(dataPath: dataPath, cluster: cluster) { configuration in
            configuration.listeners[0].bind.host = "::1"
        }
        #if os(Linux)
        #expect(balancer.balancer.relayIsRunning == (dataPath == .automatic))
        #endif
        let address = try balancer.address()
        #expect(address.protocol == .inet6)
        let connection = try await TestClient.connect(to: address)
        let answer = try await connection.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "request over IPv6"))
            outbound.finish()
            return String(buffer: try await TestClient.readAll(inbound))
        }
        #expect(answer == "request over IPv6")
        try await balancer.waitForAccessLog(1)
        try await balancer.stop()
        await cluster.stop()
        let line = try #require(balancer.accessLog.first)
        #expect(line.metadata["node"] == "ums1" && line.metadata["outcome"] == "closed", "\(line)")
        #expect(line.metadata["client"].map { "\($0)".hasPrefix("[::1]:") } == true, "\(line)")
    }

    @Test(arguments: DataPath.allCases) func drainingANodeClosesAtMostTheConnectionsAskedFor(
        _ dataPath: DataPath
    ) async throws {
        let cluster = try await BackendCluster.start([.greetThenEcho])
        let balancer = try await RunningBalancer.start(dataPath: dataPath, cluster: cluster)
        var open: [TestClient.Connection] = []
        for _ in 0..<3 {
            let connection = try await TestClient.connect(to: try balancer.address())
            var iterator = connection.inbound.makeAsyncIterator()
            #expect(try await TestClient.readLine(&iterator) == "ums1")
            open.append(connection)
        }
        let registry = balancer.balancer.connections
        #expect(registry.count(relayedTo: "ums1") == 3)
        #expect(registry.drain("ums1", atMost: 2) == 2)
        let deadline = ContinuousClock.now + .seconds(10)
        while registry.count(relayedTo: "ums1") > 1, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(registry.count(relayedTo: "ums1") == 1)
        #expect(balancer.accessLog.filter { $0.metadata["outcome"] == "drained" }.count == 2)
        for connection in open { await TestClient.close(connection) }
        try await balancer.stop()
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases) func eightMebibytesEachWayArriveByteIdentical(_ dataPath: DataPath) async throws
    {
        let cluster = try await BackendCluster.start([.echo])
        let balancer = try await RunningBalancer.start(dataPath: dataPath, cluster: cluster)
        let size = 8 * 1024 * 1024
        let sent = TestBackend.payload(size: size)
        let connection = try await TestClient.connect(to: try balancer.address())
        let received = try await TestClient.sendAllWhileReading(sent, on: connection)
        #expect(received.readableBytes == size)
        #expect(received == sent)
        try await balancer.stop()
        #expect(balancer.accessLog.count == 1)
        let line = try #require(balancer.accessLog.first)
        #expect(line.metadata["bytes_in"] == "\(size)")
        #expect(line.metadata["bytes_out"] == "\(size)")
        #expect(line.metadata["node"] == "ums1")
        #expect(line.metadata["outcome"] == "closed")
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases) func aHalfClosedClientStillReceivesTheNodesFullAnswer(_ dataPath: DataPath)
        async throws
    {
        let answerSize = 4 * 1024 * 1024
        let cluster = try await BackendCluster.start([.answerAfterEOF(size: answerSize)])
        let balancer = try await RunningBalancer.start(dataPath: dataPath, cluster: cluster)
        let connection = try await TestClient.connect(to: try balancer.address())
        let answer = try await connection.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "GET /device/00E0C5000001/profile"))
            outbound.finish()
            return try await TestClient.readAll(inbound)
        }
        #expect(answer == TestBackend.payload(size: answerSize))
        try await balancer.stop()
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases) func aNodeThatRefusesConnectionsIsSkippedWithoutTheClientNoticing(
        _ dataPath: DataPath
    ) async throws {
        let cluster = try await BackendCluster.start([.greetThenEcho, .greetThenEcho])
        // Probes run rarely, so the balancer still believes ums1 is up after it stops listening.
        let balancer = try await RunningBalancer.start(dataPath: dataPath, balance: .roundRobin, cluster: cluster) {
            $0.health.interval = .seconds(3600)
        }
        await cluster.backends[0].stop()
        var greetings: [String] = []
        for _ in 0..<10 {
            greetings.append(try await TestClient.greeting(from: try balancer.address()) ?? "closed")
        }
        #expect(greetings == Array(repeating: "ums2", count: 10))
        try await balancer.stop()
        #expect(balancer.accessLog.count == 10)
        #expect(
            balancer.accessLog.allSatisfy { $0.metadata["node"] == "ums2" && $0.metadata["outcome"] == "closed" },
            "\(balancer.accessLog)")
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases) func aNodeThatClosesWithoutAnsweringHandsTheClientToTheNextNode(
        _ dataPath: DataPath
    ) async throws {
        let cluster = try await BackendCluster.start([.closeAtOnce, .echo])
        let balancer = try await RunningBalancer.start(dataPath: dataPath, balance: .roundRobin, cluster: cluster)
        try await expectEchoes(through: balancer, count: 10)
        try await balancer.stop()
        #expect(
            balancer.accessLog.allSatisfy { $0.metadata["node"] == "ums2" && $0.metadata["outcome"] == "closed" },
            "\(balancer.accessLog)")
        #expect(balancer.accessLog.contains { $0.metadata["retries"] == "1" })
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases) func aNodeNamedByHostNameIsReachedThroughAPlainListener(_ dataPath: DataPath)
        async throws
    {
        // The name is resolved before the listeners open (and on each health interval), off the
        // data path: the connections are relayed to its address like any other.
        let cluster = try await BackendCluster.start([.echo], firstHost: 1)
        let balancer = try await RunningBalancer.start(
            dataPath: dataPath,
            cluster: cluster, nodes: [NodeConfiguration(id: "ums1", host: "localhost")])
        try await expectEchoes(through: balancer, count: 3)
        try await balancer.stop()
        #expect(balancer.accessLog.count == 3)
        #expect(
            balancer.accessLog.allSatisfy {
                $0.metadata["node"] == "ums1" && $0.metadata["outcome"] == "closed" && $0.metadata["bytes_in"] == "9"
            }, "\(balancer.accessLog)")
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases) func whenEveryNodeIsDownTheClientIsClosedPromptlyAndTheLogSaysWhy(
        _ dataPath: DataPath
    ) async throws {
        let cluster = try await BackendCluster.start([.echo, .echo])
        await cluster.stop()
        let balancer = try await RunningBalancer.start(dataPath: dataPath, cluster: cluster)
        let started = ContinuousClock.now
        let connection = try await TestClient.connect(to: try balancer.address())
        let received = try await connection.executeThenClose { inbound, _ in try await TestClient.readAll(inbound) }
        #expect(received.readableBytes == 0)
        // At once: no connect is even tried (a busy test machine gets some slack).
        #expect(ContinuousClock.now - started < .milliseconds(2500))
        try await balancer.stop()
        let line = try #require(balancer.accessLog.first)
        #expect(line.level == .warning)
        #expect(line.metadata["outcome"] == "refused")
        #expect(line.metadata["reason"] == "device refused: ums1 down, ums2 down")
    }

    @Test(arguments: DataPath.allCases) func aSlowReaderDoesNotMakeTheBalancerBuffer(_ dataPath: DataPath) async throws
    {
        let total = 128 * 1024 * 1024
        let cluster = try await BackendCluster.start([.firehose(size: total)])
        let balancer = try await RunningBalancer.start(dataPath: dataPath, cluster: cluster)
        let connection = try await TestClient.connect(to: try balancer.address())
        try await connection.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "go"))
            // The client reads nothing for a while: the node may only get as far as the socket
            // buffers on the way let it, never the whole stream into the balancer's memory.
            try await Task.sleep(for: .milliseconds(1500))
            let pushedWhileStalled = cluster.backends[0].bytesWritten
            #expect(pushedWhileStalled > 0)
            #expect(
                pushedWhileStalled < 40 * 1024 * 1024,
                "the balancer read \(pushedWhileStalled) bytes it could not pass on")
            var count = 0
            for try await chunk in inbound { count += chunk.readableBytes }
            #expect(count == total)
        }
        try await balancer.stop()
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases) func aNodeThatStopsReadingDoesNotHoldItsConnectionOpenForGood(
        _ dataPath: DataPath
    ) async throws {
        let cluster = try await BackendCluster.start([.neverReads])
        // Long enough that a test machine busy with other tests gets the client's bytes out first.
        let balancer = try await RunningBalancer.start(dataPath: dataPath, cluster: cluster) {
            $0.timeouts.idle = .seconds(2)
        }
        let connection = try await TestClient.connect(to: try balancer.address())
        // More than the socket buffers on the way hold: the balancer is left with bytes for the node.
        let payload = TestBackend.payload(size: 16 * 1024 * 1024)
        // A first chunk surely on its way before the rest, however late the writer task runs.
        try await connection.outbound.write(TestBackend.payload(size: 64 * 1024))
        let writer = Task { try await connection.outbound.write(payload) }
        try await Task.sleep(for: .milliseconds(500))
        writer.cancel()
        try? await connection.channel.close()
        // Nothing moves any more: the idle timeout ends the connection, bytes queued for the node
        // or not. (The node's own count would include the health probes, whose closes it never reads.)
        func nodeConnections() -> Int { balancer.balancer.directory.snapshot().map(\.connections).reduce(0, +) }
        let deadline = ContinuousClock.now + .seconds(10)
        while nodeConnections() + balancer.balancer.connections.count > 0 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(nodeConnections() == 0)
        #expect(balancer.balancer.connections.count == 0)
        try await balancer.stop()
        let line = try #require(balancer.accessLog.first)
        #expect(line.metadata["node"] == "ums1", "the client was relayed to the node")
        #expect(Int(line.metadata["bytes_in"] ?? "") ?? 0 > 0, "\(line)")
        #expect(line.metadata["outcome"] == "idle-timeout")
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases) func hundredConcurrentConnectionsSpreadOverThreeNodesByLeastConnections(
        _ dataPath: DataPath
    ) async throws {
        let cluster = try await BackendCluster.start([.greetThenEcho, .greetThenEcho, .greetThenEcho])
        let balancer = try await RunningBalancer.start(dataPath: dataPath, cluster: cluster)
        let address = try balancer.address()
        let connections = try await withThrowingTaskGroup(of: TestClient.Connection.self) { tasks in
            for _ in 0..<100 { tasks.addTask { try await TestClient.connect(to: address) } }
            return try await tasks.reduce(into: []) { $0.append($1) }
        }
        var perNode: [String: Int] = [:]
        for connection in connections {
            var iterator = connection.inbound.makeAsyncIterator()
            let node = try await TestClient.readLine(&iterator) ?? "closed"
            perNode[node, default: 0] += 1
        }
        #expect(perNode.keys.sorted() == ["ums1", "ums2", "ums3"])
        #expect(perNode.values.allSatisfy { (33...34).contains($0) }, "\(perNode)")
        // The nodes also count the health probes' connections until they see them close.
        let settled = ContinuousClock.now + .seconds(5)
        while cluster.backends.map(\.active).reduce(0, +) != 100 && ContinuousClock.now < settled {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(cluster.backends.map(\.active).reduce(0, +) == 100)
        #expect(balancer.balancer.directory.snapshot().map(\.connections).reduce(0, +) == 100)
        for connection in connections { await TestClient.close(connection) }
        try await balancer.stop()
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases) func consoleConnectionsFromOneClientStayOnOneNode(_ dataPath: DataPath)
        async throws
    {
        let cluster = try await BackendCluster.start([.greetThenEcho, .greetThenEcho, .greetThenEcho])
        let balancer = try await RunningBalancer.start(
            dataPath: dataPath, listeners: [("console", .console)], cluster: cluster)
        var nodes: Set<String> = []
        for _ in 0..<12 {
            let connection = try await TestClient.connect(to: try balancer.address("console"))
            let node = try await connection.executeThenClose { inbound, outbound in
                var iterator = inbound.makeAsyncIterator()
                defer { outbound.finish() }
                return try await TestClient.readLine(&iterator)
            }
            nodes.insert(node ?? "closed")
        }
        #expect(nodes.count == 1)
        #expect(!nodes.contains("closed"))
        try await balancer.stop()
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases) func anIdleConnectionIsClosedAfterTheIdleTimeout(_ dataPath: DataPath)
        async throws
    {
        let cluster = try await BackendCluster.start([.echo])
        let balancer = try await RunningBalancer.start(dataPath: dataPath, cluster: cluster) {
            $0.timeouts.idle = .milliseconds(300)
        }
        let started = ContinuousClock.now
        let connection = try await TestClient.connect(to: try balancer.address())
        let received = try await connection.executeThenClose { inbound, _ in try await TestClient.readAll(inbound) }
        let elapsed = ContinuousClock.now - started
        #expect(received.readableBytes == 0)
        #expect(elapsed >= .milliseconds(250) && elapsed < .seconds(5))
        try await balancer.stop()
        #expect(balancer.accessLog.first?.metadata["outcome"] == "idle-timeout")
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases) func aConnectionMovingBytesOutlivesTheIdleTimeoutUntilItGoesQuiet(
        _ dataPath: DataPath
    ) async throws {
        let cluster = try await BackendCluster.start([.echo])
        let balancer = try await RunningBalancer.start(dataPath: dataPath, cluster: cluster) {
            $0.timeouts.idle = .seconds(3)
        }
        let connection = try await TestClient.connect(to: try balancer.address())
        let (echoed, quietFor, bytesAfter) = try await connection.executeThenClose { inbound, outbound in
            var iterator = inbound.makeAsyncIterator()
            // A line every 100 ms for 4 s, past the 3 s timeout: each is echoed, nothing is closed (the
            // margin is wide, so a loaded machine that stalls this process for a moment does not matter).
            var echoed: [String] = []
            for index in 0..<40 {
                try await outbound.write(ByteBuffer(string: "ping \(index)\n"))
                echoed.append(try await TestClient.readLine(&iterator) ?? "closed")
                try await Task.sleep(for: .milliseconds(100))
            }
            let quietSince = ContinuousClock.now
            let rest = try await TestClient.readRest(&iterator)
            return (echoed, ContinuousClock.now - quietSince, rest.readableBytes)
        }
        #expect(echoed == (0..<40).map { "ping \($0)" })
        #expect(bytesAfter == 0)
        #expect(quietFor >= .milliseconds(1500) && quietFor < .seconds(10))
        try await balancer.stop()
        #expect(balancer.accessLog.first?.metadata["outcome"] == "idle-timeout")
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases) func listenersOpenOnlyAfterTheFirstProbeRound(_ dataPath: DataPath) async throws
    {
        let cluster = try await BackendCluster.start([.greetThenEcho])
        let balancer = try await RunningBalancer.start(dataPath: dataPath, cluster: cluster)
        // By the time the listener accepts, the node's health is known, so the first connection is served.
        #expect(balancer.balancer.directory.snapshot().first?.status.health == .up)
        try await balancer.stop()
        await cluster.stop()
    }
}
