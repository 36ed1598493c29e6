import AsyncHTTPClient
import BalancerCore
import BalancerDataPath
import BalancerStore
import BalancerTesting
import Foundation
import Testing

@testable import BalancerNIO

/// A reconnect deadline is a deadline: a node whose reconnect endpoint accepts and never answers
/// makes the run `stalled` at `reconnect.timeout`, not when some call finally gives up.
@Suite(.timeLimit(.minutes(2)))
struct ReconnectDeadlineTests {
    @Test func aCallThatNeverAnswersStallsTheRunAtTheFirstTickPastItsDeadline() async throws {
        // The reconnect endpoint of ums1: accepts, never reads, never answers.
        let dead = try await TestBackend.start(name: "dead", host: "127.0.0.11", behavior: .neverReads)
        var configuration = BalancerConfiguration(
            listeners: [],
            nodes: [
                NodeConfiguration(id: "ums1", host: "127.0.0.11"), NodeConfiguration(id: "ums2", host: "127.0.0.12"),
            ])
        var reconnect = ReconnectSettings(action: .url("http://{host}:\(dead.port)/control/reconnect"))
        reconnect.timeout = .seconds(20)
        configuration.reconnect = reconnect
        let directory = NodeDirectory(nodes: configuration.nodes, consolePolicy: .normalOnly) {
            _ in NodeObservation(health: .up, mode: .normal, version: "12.06.100")
        }
        let clock = ManualClock()
        let logs = LogCapture()
        let httpClient = HTTPClient(eventLoopGroupProvider: .singleton)
        let coordinator = UpdateCoordinator(
            configuration: configuration, initialRun: nil, directory: directory, httpClient: httpClient, store: nil,
            journal: Journal(store: nil, logger: logs.logger()), logger: logs.logger(), clock: clock)
        for (node, mode) in [("ums1", NodeMode.update), ("ums2", .normal)] {
            directory.observe(node) {
                $0.mode = mode
                $0.version = "12.07.100"
            }
            await coordinator.nodesChanged()
        }
        #expect(await coordinator.run.state == .reconnecting)

        let ticking = Task { try await coordinator.run() }
        var stalledAt: Date?
        for _ in 0..<200 {
            try await clock.waitForSleepers(1)
            // Far from the deadline time jumps (the call in flight has a real 10 s timeout, and a
            // loaded machine must not spend it on ticks); near it, tick by tick.
            let left = await coordinator.run.reconnects["ums1"]?.deadline.map { $0.timeIntervalSince(clock.now()) }
            clock.advance(by: (left ?? 0) > 2 ? .seconds(1) : .milliseconds(250))
            // The coordinator has handled the tick once it sleeps again.
            try await clock.waitForSleepers(1)
            if await coordinator.run.state == .stalled {
                stalledAt = clock.now()
                break
            }
        }
        ticking.cancel()
        let run = await coordinator.run
        let deadline = try #require(run.reconnects["ums1"]?.deadline)
        let stalled = try #require(stalledAt, "never stalled: \(run.summary)")
        #expect(stalled >= deadline && stalled.timeIntervalSince(deadline) <= 0.25)
        #expect(deadline.timeIntervalSince(clock.now()) <= 0)
        #expect(run.reconnects["ums1"]?.attempts == 1)
        #expect(dead.accepted == 1, "the one call is still in flight")
        #expect(
            run.reconnects["ums1"]?.lastAnswer
                == "not back in normal mode within 20s (the reconnect call had no answer yet)")
        // The call was given 10 s of its own, the most any call gets.
        #expect(logs.records("calling reconnect").map { $0.metadata["timeout"] } == ["10s"])
        #expect(logs.records("update run stalled").count == 1)
        try await httpClient.shutdown()
        await dead.stop()
    }

    @Test func aDeadNodeStallsTheRunWithinASecondOfReconnectTimeout() async throws {
        let cluster = try await SimulatedCluster.start(count: 2)
        // ums1's reconnect action points at a port that accepts and never answers.
        let dead = try await TestBackend.start(
            name: "dead", host: "127.0.0.11", port: try FreePort.pick(), behavior: .neverReads)
        let balancer = try await RunningBalancer.start(for: cluster) { configuration in
            var reconnect = ReconnectSettings(action: .url("http://{host}:\(dead.port)/control/reconnect"))
            reconnect.timeout = .seconds(3)
            configuration.reconnect = reconnect
        }
        try await cluster.install("ums1", version: "12.07.100", seconds: 0.2)
        try await balancer.waitUntil("ums1", "in update mode") { $0.mode == .update }
        try await cluster.install("ums2", version: "12.07.100", seconds: 0.2)
        let called = try await balancer.waitForRun("reconnect called") { $0.reconnects["ums1"]?.deadline != nil }
        let deadline = try #require(called.reconnects["ums1"]?.deadline)

        let stalled = try await balancer.waitForRun("stalled", timeout: .seconds(30)) { $0.state == .stalled }
        let late = Date().timeIntervalSince(deadline)
        #expect(late < 1, "stalled \(late) s after reconnect.timeout")
        #expect(stalled.reconnects["ums1"]?.phase == .failed)
        #expect(dead.accepted >= 1)
        // Every call fitted in the time left: 1.5 s (half the timeout), then what remained.
        let timeouts = balancer.logs.records("calling reconnect").compactMap { $0.metadata["timeout"] }
        #expect(timeouts.first == "1500ms", "\(timeouts)")
        #expect(timeouts.allSatisfy { (DurationText.parse($0) ?? .seconds(99)) <= .milliseconds(1500) })
        try await balancer.stop()
        await dead.stop()
        await cluster.stop()
    }
}
