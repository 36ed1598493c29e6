import BalancerCore
import BalancerNIO
import BalancerStore
import BalancerTesting
import Foundation
import NIOCore
import Testing

/// A whole rolling update of three simulated UMS Servers through the balancer, under device load.
@Suite(.timeLimit(.minutes(2)))
struct RollingUpdateTests {
    @Test func aFullRollingUpdateLosesNoDeviceRequestAndReconnectsEachUpdateModeNodeOnce() async throws {
        let cluster = try await SimulatedCluster.start()
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = try StateStore(path: dir.url.appendingPathComponent("state.sqlite").path)
        let balancer = try await RunningBalancer(
            configuration: RunningBalancer.configuration(for: cluster), store: store)
        let load = DeviceLoad.start(address: try balancer.address())
        let consoles = Task {
            var logins = 0
            for _ in 0..<400 {
                if Task.isCancelled { break }
                if let answer = try? await TestHTTP.request(
                    "POST", "/console/login", to: try balancer.address("console"), body: "{}"), answer.status == 200
                {
                    logins += 1
                }
                try? await Task.sleep(for: .milliseconds(25))
            }
            return logins
        }

        for node in ["ums1", "ums2", "ums3"] {
            try await cluster.install(node, version: "12.07.100", seconds: 0.5)
            try await cluster.waitUntil("\(node) installed") { nodes in
                nodes.first { $0.configuration.id == node }!.version.text == "12.07.100"
            }
        }
        try await cluster.waitUntil("every node normal on 12.07.100", timeout: .seconds(30)) { nodes in
            nodes.allSatisfy { $0.mode == .normal && $0.version.text == "12.07.100" && $0.database == .productive }
        }
        let deadline = ContinuousClock.now + .seconds(15)
        while await balancer.balancer.updateRun().state != .completed && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        try await Task.sleep(for: .milliseconds(300))
        let summary = await load.stop()
        consoles.cancel()
        let logins = await consoles.value

        let run = await balancer.balancer.updateRun()
        #expect(run.state == .completed)
        #expect(run.targetVersion == "12.07.100")
        #expect((run.updated, run.total) == (3, 3))
        #expect(
            summary.failures.isEmpty,
            "\(summary.failures.prefix(5)) \(balancer.accessLog.filter { $0.metadata["outcome"] != "closed" }.prefix(5))"
        )
        #expect(summary.served > 20)
        // Servers in update mode answered too (a request in flight when an install starts is answered
        // while the server goes down, so "installing" may appear as well).
        #expect(Set(summary.answers.map(\.mode)).isSuperset(of: ["normal", "update"]))
        #expect(cluster.nodes.map(\.consoleLoginsInUpdateMode) == [0, 0, 0])
        #expect(logins > 0)
        try await balancer.stop()

        let events = try await store.events(limit: 1000)
        let reconnectCalls = events.filter { $0.kind == .reconnect && $0.message.hasPrefix("reconnect call") }
        #expect(reconnectCalls.map { $0.node ?? "?" }.sorted() == ["ums1", "ums2"])
        let runSteps = events.filter { $0.kind == .run }.map { $0.message.components(separatedBy: ":").first ?? "" }
        #expect(runSteps == ["idle -> in-progress", "in-progress -> reconnecting", "reconnecting -> completed"])
        let order = ["run", "drain", "reconnect", "release"].map { kind in
            events.firstIndex { $0.kind.rawValue == kind } ?? -1
        }
        #expect(
            order == order.sorted() && !order.contains(-1),
            "journal order: \(events.map { "\($0.kind) \($0.message)" })")
        await cluster.stop()
    }
}
