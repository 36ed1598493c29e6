import BalancerTesting
import Testing

/// `ums-balancer demo`, the first thing a new user runs.
@Suite(.timeLimit(.minutes(2)))
struct DemoTests {
    @Test func theDemoWalksThroughAWholeRollingUpdateAndExitsZero() async throws {
        let demo = try await ProcessHarness("ums-balancer", ["demo", "--speed", "3", "--devices", "3"])
        defer { demo.kill() }
        let status = try await demo.waitForExit(timeout: .seconds(90))
        let output = demo.output
        #expect(status == 0, "\(output)")
        #expect(output.contains("update run in-progress -> reconnecting"))
        #expect(output.contains("completed: 12.07.100, 3 of 3 servers updated"))
        #expect(output.contains(" 0 failed"))
        #expect(output.contains("0 accepted by a server in update mode"))
        #expect(output.contains("result          OK"))
    }

    @Test func theDemoRejectsNonsenseOptions() async throws {
        let result = try await ProcessHarness.run("ums-balancer", ["demo", "--nodes", "1"])
        #expect(result.status != 0)
        #expect(result.output.contains("--nodes must be between 2 and 9"))
    }
}
