import BalancerCore
import BalancerNIO
import BalancerTesting
import Foundation
import Testing

/// The whole balancer on a manual clock: probe intervals and update-run deadlines follow the time
/// a test sets, so an install that runs past `update.install_timeout` is seen without waiting for it.
@Suite(.timeLimit(.minutes(1)))
struct ManualTimeTests {
    /// Advances `clock` one probe interval at a time until `condition` holds (bounded).
    func advance(
        _ clock: ManualClock, by interval: Duration, sleepers: Int, until what: String,
        _ condition: @Sendable () async -> Bool
    ) async throws {
        for _ in 0..<200 {
            if await condition() { return }
            try await clock.waitForSleepers(sleepers)
            clock.advance(by: interval)
        }
        throw TestKitError("never \(what)")
    }

    @Test func anInstallRunningPastInstallTimeoutIsFlaggedWhenTimeGetsThereAndNotBefore() async throws {
        let cluster = try await SimulatedCluster.start(count: 2)
        let clock = ManualClock()
        var configuration = try RunningBalancer.configuration(for: cluster)
        configuration.update.installTimeout = .seconds(600)
        let balancer = try await RunningBalancer(configuration: configuration, clock: clock)
        // Two probe loops and the coordinator's tick sleep on the clock.
        let sleepers = 3
        // A real install of a minute: the balancer's ten minutes pass on the manual clock.
        try await cluster.install("ums2", version: "12.07.100", seconds: 60)
        try await advance(clock, by: .milliseconds(100), sleepers: sleepers, until: "ums2 seen installing") {
            balancer.balancer.directory.status(of: "ums2")?.mode == .installing
        }
        try await clock.waitForSleepers(sleepers)
        clock.advance(by: .seconds(599))
        try await clock.waitForSleepers(sleepers)
        #expect(await balancer.balancer.updateRun().flags.isEmpty, "not overdue a second before the timeout")

        clock.advance(by: .seconds(2))
        try await clock.waitForSleepers(sleepers)
        let run = await balancer.balancer.updateRun()
        #expect(run.flags == [.installOverdue("ums2")])
        #expect(run.state == .inProgress, "a flag makes the run loud; it changes nothing else")
        #expect(balancer.logs.records("update run flagged").count == 1)
        try await balancer.stop()
        await cluster.stop()
    }
}
