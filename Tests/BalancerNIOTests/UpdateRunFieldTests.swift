import BalancerCore
import BalancerNIO
import BalancerStore
import BalancerTesting
import Foundation
import Testing

/// The field reports of runs that never ended, repeated on simulated UMS Servers with the console
/// policy `freeze`: each run now ends, says how, and console logins work again.
@Suite(.timeLimit(.minutes(2)))
struct UpdateRunFieldTests {
    static let noVersionChange = "every server is normal on 12.06.100; none reached a higher version"

    @Test func aSameVersionReinstallEndsTheRunAndLiftsTheFreeze() async throws {
        let cluster = try await SimulatedCluster.start(count: 2)
        let folder = try TemporaryDirectory()
        let store = try StateStore(path: folder.url.appendingPathComponent("state.sqlite").path)
        let balancer = try await RunningBalancer(
            configuration: RunningBalancer.configuration(for: cluster, consolePolicy: .freeze), store: store)
        #expect(await balancer.consoleLogin()?.status == 200)

        // A repair install of the version the cluster already runs.
        try await cluster.install("ums1", version: "12.06.100", seconds: 2)
        let running = try await balancer.waitForRun("in progress") { $0.state == .inProgress }
        #expect(running.targetVersion == nil && (running.updated, running.total) == (0, 2))
        #expect(await balancer.consoleLogin() == nil, "freeze applies while the run is in progress")

        let ended = try await balancer.waitForRun("idle again", timeout: .seconds(30)) { $0.state == .idle }
        #expect(ended.lastRun?.outcome == .noVersionChange)
        #expect(ended.lastRun?.reason == Self.noVersionChange)
        #expect(cluster.nodes.allSatisfy { $0.mode == .normal && $0.version.text == "12.06.100" })
        #expect(await balancer.consoleLogin()?.status == 200, "freeze lifted when the run ended")
        try await balancer.stop()

        // What a restart would read: the run ended, and how.
        let saved = try await store.loadRun()
        #expect(saved?.state == .idle && saved?.lastRun?.outcome == .noVersionChange)
        let steps = try await store.events(limit: 1000).filter { $0.kind == .run }.map(\.message)
        #expect(
            steps == [
                "idle -> in-progress: ums1 reports installing",
                "in-progress -> idle: no-version-change: \(Self.noVersionChange)",
            ])
        await cluster.stop()
        folder.remove()
    }

    @Test func aOneSecondModeOverrideLeavesNoRunBehind() async throws {
        let cluster = try await SimulatedCluster.start(count: 2)
        let balancer = try await RunningBalancer.start(for: cluster, consolePolicy: .freeze)
        #expect(await balancer.balancer.overrideMode(.update, of: "ums2", actor: "operator"))
        #expect(await balancer.balancer.updateRun().state == .inProgress)
        #expect(await balancer.consoleLogin() == nil)

        try await Task.sleep(for: .seconds(1))
        #expect(await balancer.balancer.overrideMode(nil, of: "ums2", actor: "operator"))
        let run = await balancer.balancer.updateRun()
        #expect(run.state == .idle)
        #expect(run.lastRun?.outcome == .noVersionChange && run.lastRun?.reason == Self.noVersionChange)
        #expect(await balancer.consoleLogin()?.status == 200)
        // Probe rounds later nothing has come back.
        try await Task.sleep(for: .milliseconds(500))
        #expect(await balancer.balancer.updateRun().state == .idle)
        try await balancer.stop()
        await cluster.stop()
    }

    @Test func aStuckRunPersistedByAnEarlierVersionEndsAtTheFirstProbes() async throws {
        // What the field found in its state databases: in-progress, 0 of 2, no target, for good.
        var stuck = UpdateRun()
        stuck.state = .inProgress
        stuck.startingVersion = "12.06.100"
        stuck.total = 2
        stuck.startedAt = Date().addingTimeInterval(-86_400)
        let cluster = try await SimulatedCluster.start(count: 2)
        let balancer = try await RunningBalancer(
            configuration: RunningBalancer.configuration(for: cluster, consolePolicy: .freeze), initialRun: stuck)
        // Listeners open after the first probe round, which ended the run.
        let run = try await balancer.waitForRun("idle", timeout: .seconds(5)) { $0.state == .idle }
        #expect(run.lastRun?.outcome == .noVersionChange)
        #expect(await balancer.consoleLogin()?.status == 200)
        #expect(
            !balancer.logs.records("update run flagged").isEmpty,
            "a day-old run is flagged overdue on resume before the probes end it")
        try await balancer.stop()
        await cluster.stop()
    }
}
