import BalancerCore
import BalancerNIO
import BalancerTesting
import NIOCore
import Testing

/// A status endpoint that lies must make its node unknown or down, and never crash or stall the
/// balancer for anyone else.
@Suite(.timeLimit(.minutes(1)))
struct LyingStatusTests {
    struct Setup {
        var cluster: BackendCluster
        var stubs: [StatusStub]
        var balancer: RunningBalancer

        func stop() async throws {
            try await balancer.stop()
            for stub in stubs { await stub.stop() }
            await cluster.stop()
        }

        /// Which nodes answer 30 new device connections.
        func greetings() async throws -> Set<String> {
            var seen: Set<String> = []
            for _ in 0..<30 {
                seen.insert(try await TestClient.greeting(from: try balancer.address()) ?? "closed")
            }
            return seen
        }
    }

    func start(liar: StatusStub.Behavior) async throws -> Setup {
        let cluster = try await BackendCluster.start([.greetThenEcho, .greetThenEcho, .greetThenEcho])
        let statusPort = try FreePort.pick()
        var stubs = [try await StatusStub.start(host: "127.0.0.11", port: statusPort, behavior: liar)]
        for (index, host) in ["127.0.0.12", "127.0.0.13"].enumerated() {
            stubs.append(
                try await StatusStub.start(
                    host: host, port: statusPort,
                    behavior: .json(StatusStub.status(id: "ums\(index + 2)", mode: "normal"))))
        }
        let balancer = try await RunningBalancer.start(cluster: cluster) {
            // Timeouts generous enough that honest nodes never time out on a loaded machine.
            $0.status = StatusProbeSettings(action: .url("http://{host}:\(statusPort)/status"), timeout: .seconds(3))
            $0.health.interval = .milliseconds(100)
            $0.health.rise = 2
            $0.health.fall = 3
        }
        return Setup(cluster: cluster, stubs: stubs, balancer: balancer)
    }

    @Test func garbageJSONMakesTheNodeDownAndUnknown() async throws {
        let setup = try await start(liar: .json("<html>502 Bad Gateway</html>"))
        try await setup.balancer.waitUntil("ums1", "down") { $0.health == .down && $0.mode == .unknown }
        let seen = try await setup.greetings()
        #expect(seen == ["ums2", "ums3"], "\(seen)")
        try await setup.stop()
    }

    @Test func anUnknownModeMakesTheNodeUnknownAndUnroutable() async throws {
        let setup = try await start(liar: .json(#"{"id":"ums1","mode":"sleeping","version":"12.06.100"}"#))
        try await setup.balancer.waitUntil("ums1", "unknown") { $0.mode == .unknown }
        #expect(setup.balancer.balancer.directory.status(of: "ums1")?.health == .up)
        let seen = try await setup.greetings()
        #expect(seen == ["ums2", "ums3"], "\(seen)")
        try await setup.stop()
    }

    @Test func aHangingStatusEndpointTimesOutWithoutStallingOtherProbesOrTraffic() async throws {
        let setup = try await start(liar: .hang)
        try await setup.balancer.waitUntil("ums1", "down") { $0.health == .down }
        let before = setup.stubs[1].requestCount
        let started = ContinuousClock.now
        let seen = try await setup.greetings()
        #expect(seen == ["ums2", "ums3"], "\(seen)")
        #expect(ContinuousClock.now - started < .seconds(20))
        try await Task.sleep(for: .milliseconds(500))
        // ums2 keeps being probed on its own interval while ums1's probes hang.
        #expect(setup.stubs[1].requestCount >= before + 3)
        try await setup.stop()
    }

    @Test func aFlappingStatusEndpointIsTakenDown() async throws {
        let setup = try await start(liar: .flap(good: StatusStub.status(id: "ums1", mode: "normal")))
        try await setup.balancer.waitUntil("ums1", "down as flapping") { $0.health == .down && $0.mode == .unknown }
        try await Task.sleep(for: .milliseconds(500))
        #expect(setup.balancer.balancer.directory.status(of: "ums1")?.health == .down)
        let seen = try await setup.greetings()
        #expect(seen == ["ums2", "ums3"], "\(seen)")
        try await setup.stop()
    }
}
