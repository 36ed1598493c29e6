import BalancerCore
import BalancerNIO
import BalancerTesting
import NIOCore
import NIOPosix
import Testing

/// Reloads applied to a running balancer: what changes, what must not.
@Suite(.timeLimit(.minutes(1)))
struct ReloadTests {
    func greeting(_ address: SocketAddress) async throws -> String? {
        try await TestClient.greeting(from: address)
    }

    func listener(_ name: String, port: Int, backendPort: Int) -> ListenerConfiguration {
        ListenerConfiguration(
            name: name, bind: Endpoint(host: "127.0.0.1", port: port), backendPort: backendPort,
            classification: .fixed(.device))
    }

    @Test(arguments: DataPath.allCases) func anAddedListenerAcceptsAtOnceAndTheGenerationRises(_ dataPath: DataPath)
        async throws
    {
        let cluster = try await BackendCluster.start([.greetThenEcho])
        let balancer = try await RunningBalancer.start(dataPath: dataPath, cluster: cluster)
        var next = balancer.balancer.configuration
        let port = try FreePort.pick()
        next.listeners.append(listener("extra", port: port, backendPort: cluster.port))
        let diff = try await balancer.balancer.reload(to: next)
        #expect(diff.addedListeners.map(\.name) == ["extra"])
        #expect(try await greeting(SocketAddress(ipAddress: "127.0.0.1", port: port)) == "ums1")
        #expect(balancer.balancer.reloadStatus.generation == 2)
        #expect(balancer.balancer.reloadStatus.lastReload.ok)
        try await balancer.stop()
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases) func reloadsAskedForAtOnceRunOneAfterTheOther(_ dataPath: DataPath) async throws
    {
        let cluster = try await BackendCluster.start([.greetThenEcho])
        let balancer = try await RunningBalancer.start(dataPath: dataPath, cluster: cluster)
        var next = balancer.balancer.configuration
        let port = try FreePort.pick()
        next.listeners.append(listener("extra", port: port, backendPort: cluster.port))
        // As SIGHUP and POST /reload at the same moment: run side by side, both would bind "extra".
        let results = await withTaskGroup(of: Bool.self) { tasks in
            for _ in 0..<4 {
                tasks.addTask { [next] in (try? await balancer.balancer.reload(to: next)) != nil }
            }
            return await tasks.reduce(into: []) { $0.append($1) }
        }
        #expect(results == [true, true, true, true])
        #expect(balancer.balancer.reloadStatus.generation == 5)
        #expect(try await greeting(SocketAddress(ipAddress: "127.0.0.1", port: port)) == "ums1")
        try await balancer.stop()
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases) func aRemovedListenerRefusesNewConnectionsAndClosesOldOnesAtTheDrainDeadline(
        _ dataPath: DataPath
    ) async throws {
        let cluster = try await BackendCluster.start([.greetThenEcho])
        let balancer = try await RunningBalancer.start(dataPath: dataPath, cluster: cluster)
        let address = try balancer.address()
        let open = try await TestClient.connect(to: address)
        var iterator = open.inbound.makeAsyncIterator()
        #expect(try await TestClient.readLine(&iterator) == "ums1")

        var next = balancer.balancer.configuration
        next.listeners = [listener("other", port: try FreePort.pick(), backendPort: cluster.port)]
        next.update.drainTimeout = .milliseconds(700)
        try await balancer.balancer.reload(to: next)
        await #expect(throws: (any Error).self) { _ = try await TestClient.connect(to: address) }

        // The old connection still works until the drain deadline, then it is closed.
        try await open.outbound.write(ByteBuffer(string: "still here\n"))
        #expect(try await TestClient.readLine(&iterator) == "still here")
        let started = ContinuousClock.now
        #expect(try await TestClient.readLine(&iterator) == nil)
        // Closed at the 700 ms drain deadline, not at the idle timeout (an hour).
        #expect(ContinuousClock.now - started < .seconds(10))
        await TestClient.close(open)
        try await balancer.stop()
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases) func aRemovedNodeFinishesItsConnectionsButGetsNoNewOnes(_ dataPath: DataPath)
        async throws
    {
        let cluster = try await BackendCluster.start([.greetThenEcho, .greetThenEcho])
        let balancer = try await RunningBalancer.start(dataPath: dataPath, balance: .roundRobin, cluster: cluster)
        let address = try balancer.address()
        var held: [TestClient.Connection] = []
        var onUms1: (TestClient.Connection, NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator)?
        for _ in 0..<2 {
            let connection = try await TestClient.connect(to: address)
            var iterator = connection.inbound.makeAsyncIterator()
            if try await TestClient.readLine(&iterator) == "ums1" {
                onUms1 = (connection, iterator)
            } else {
                held.append(connection)
            }
        }
        var (survivor, iterator) = try #require(onUms1)

        var next = balancer.balancer.configuration
        next.nodes.removeAll { $0.id == "ums1" }
        let diff = try await balancer.balancer.reload(to: next)
        #expect(diff.removedNodes.map(\.id) == ["ums1"])
        for _ in 0..<6 { #expect(try await greeting(address) == "ums2") }

        try await survivor.outbound.write(ByteBuffer(string: "finishing"))
        survivor.outbound.finish()
        #expect(String(buffer: try await TestClient.readRest(&iterator)) == "finishing")
        await TestClient.close(survivor)
        for connection in held { await TestClient.close(connection) }
        try await balancer.stop()
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases) func aBindConflictRejectsTheWholeReload(_ dataPath: DataPath) async throws {
        let cluster = try await BackendCluster.start([.greetThenEcho])
        let balancer = try await RunningBalancer.start(dataPath: dataPath, cluster: cluster)
        let blocker = try await TestBackend.start(name: "squatter", behavior: .echo)
        let freePort = try FreePort.pick()
        var next = balancer.balancer.configuration
        next.listeners.append(listener("fine", port: freePort, backendPort: cluster.port))
        next.listeners.append(listener("taken", port: blocker.port, backendPort: cluster.port))
        next.nodes.append(NodeConfiguration(id: "ums9", host: "127.0.0.99"))

        await #expect(throws: BalancerError.self) { try await balancer.balancer.reload(to: next) }
        #expect(balancer.balancer.reloadStatus.generation == 1)
        #expect(balancer.balancer.reloadStatus.lastReload.ok == false)
        #expect(balancer.balancer.reloadStatus.lastReload.error?.contains("listener 'taken'") == true)
        #expect(balancer.balancer.configuration.listeners.map(\.name) == ["devices"])
        #expect(balancer.balancer.directory.snapshot().map(\.status.id) == ["ums1"])
        await #expect(throws: (any Error).self) {
            _ = try await TestClient.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: freePort))
        }
        #expect(try await greeting(try balancer.address()) == "ums1")
        try await balancer.stop()
        await blocker.stop()
        await cluster.stop()
    }

    @Test(arguments: DataPath.allCases) func drainedAndMaintenanceNodesStaySoAcrossAReload(_ dataPath: DataPath)
        async throws
    {
        let cluster = try await BackendCluster.start([.greetThenEcho, .greetThenEcho, .greetThenEcho])
        let balancer = try await RunningBalancer.start(dataPath: dataPath, cluster: cluster)
        balancer.balancer.directory.apply(.adminStateSet(.draining), to: "ums1")
        balancer.balancer.directory.apply(.adminStateSet(.maintenance), to: "ums2")
        var next = balancer.balancer.configuration
        next.timeouts.idle = .seconds(600)
        try await balancer.balancer.reload(to: next)
        let states = balancer.balancer.directory.snapshot().map { ($0.status.id, $0.status.admin, $0.status.health) }
        #expect(states.map(\.1) == [.draining, .maintenance, .active])
        #expect(states.allSatisfy { $0.2 == .up })
        for _ in 0..<5 { #expect(try await greeting(try balancer.address()) == "ums3") }
        try await balancer.stop()
        await cluster.stop()
    }
}
