import BalancerCore
import BalancerNIO
import BalancerTesting
import NIOCore
import Testing

/// Mode-aware routing against three simulated UMS Servers: what devices and consoles get while
/// servers install, run in update mode, and go down.
@Suite(.timeLimit(.minutes(2)))
struct ModeRoutingTests {
    func login(_ balancer: RunningBalancer) async throws -> TestHTTP.Response? {
        do {
            return try await TestHTTP.request("POST", "/console/login", to: try balancer.address("console"), body: "{}")
        } catch {
            return nil  // refused: closed without an answer
        }
    }

    /// The latest refusal in the access log; the line is written when the balancer closes the
    /// connection, which can be a moment after the client saw the close.
    func lastRefusal(_ balancer: RunningBalancer) async throws -> LogCapture.Record? {
        for _ in 0..<100 {
            if let record = balancer.accessLog.last(where: { $0.metadata["outcome"] == "refused" }) { return record }
            try await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    @Test func deviceRequestsAreServedByNormalAndUpdateNodesAndNeverFail() async throws {
        let cluster = try await SimulatedCluster.start()
        let balancer = try await RunningBalancer.start(for: cluster)
        let load = DeviceLoad.start(address: try balancer.address())

        try await cluster.install("ums1", version: "12.07.100", seconds: 0.8)
        try await balancer.waitUntil("ums1", "installing") { $0.mode == .installing }
        try await balancer.waitUntil("ums1", "in update mode") { $0.mode == .update }
        // Devices are served by ums1 in update mode now, from its local copy.
        let deadline = ContinuousClock.now + .seconds(15)
        while !load.summary.answers.contains(where: { $0.node == "ums1" && $0.mode == "update" }) {
            guard ContinuousClock.now < deadline else { break }
            try await Task.sleep(for: .milliseconds(20))
        }

        await cluster.node("ums3").stop()
        try await balancer.waitUntil("ums3", "down") { $0.health == .down }
        let afterDown = load.summary.served
        try await Task.sleep(for: .milliseconds(400))
        let summary = await load.stop()

        #expect(summary.failures.isEmpty, "\(summary.failures.prefix(5))")
        #expect(summary.answers.contains { $0.node == "ums1" && $0.mode == "update" && $0.database == "local-copy" })
        #expect(!summary.answers[afterDown...].contains { $0.node == "ums3" })
        try await balancer.stop()
        await cluster.stop()
    }

    @Test func consoleLoginsNeverReachANodeInUpdateMode() async throws {
        let cluster = try await SimulatedCluster.start()
        let balancer = try await RunningBalancer.start(for: cluster)
        var served: [String: Int] = [:]
        var refused = 0
        for (node, version) in [("ums1", "12.07.100"), ("ums2", "12.07.100")] {
            try await cluster.install(node, version: version, seconds: 0.5)
            for _ in 0..<30 {
                if let answer = try await login(balancer), answer.status == 200, let json = answer.json {
                    served[json["node"] as? String ?? "?", default: 0] += 1
                    #expect(json["warning"] == nil)
                } else {
                    refused += 1
                }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        try await cluster.waitUntil("ums1 and ums2 in update mode") { $0[0].mode == .update && $0[1].mode == .update }
        try await balancer.waitUntil("ums2", "in update mode") { $0.mode == .update }
        for _ in 0..<10 {
            let answer = try await login(balancer)
            #expect(answer?.json?["node"] as? String == "ums3")
        }
        #expect(cluster.nodes.map(\.consoleLoginsInUpdateMode) == [0, 0, 0])
        #expect(served["ums3", default: 0] > 0)
        #expect(refused == 0, "a normal node (ums3) was there for every login")

        // With no normal node left, a console is closed at once and the log says why.
        try await cluster.install("ums3", version: "12.08.000", seconds: 2)
        try await balancer.waitUntil("ums3", "installing") { $0.mode == .installing }
        #expect(try await login(balancer) == nil)
        let refusal = try await lastRefusal(balancer)
        #expect(refusal?.metadata["reason"] == "console refused: ums1 update, ums2 update, ums3 installing")
        #expect(cluster.nodes.map(\.consoleLoginsInUpdateMode) == [0, 0, 0])
        try await balancer.stop()
        await cluster.stop()
    }

    @Test func freezeRefusesConsoleLoginsEverywhereWhileAnUpdateRuns() async throws {
        let cluster = try await SimulatedCluster.start()
        let balancer = try await RunningBalancer.start(for: cluster, consolePolicy: .freeze)
        #expect(try await login(balancer)?.status == 200)

        try await cluster.install("ums1", version: "12.07.100", seconds: 0.3)
        try await balancer.waitUntil("ums1", "in update mode") { $0.mode == .update }
        #expect(await balancer.balancer.updateRun().state == .inProgress)
        for _ in 0..<10 { #expect(try await login(balancer) == nil) }
        let refusal = try await lastRefusal(balancer)
        #expect(
            refusal?.metadata["reason"]
                == "console refused: ums1 update, ums2 console frozen during update, ums3 console frozen during update")
        // Devices are not affected by the console freeze.
        let device = try await TestHTTP.request("GET", "/device/00E0C5000001/profile", to: try balancer.address())
        #expect(device.status == 200)
        #expect(cluster.nodes.map(\.consoleLoginsInUpdateMode) == [0, 0, 0])
        try await balancer.stop()
        await cluster.stop()
    }

    @Test func modeChangesAffectNewConnectionsOnlyEstablishedOnesStay() async throws {
        let cluster = try await SimulatedCluster.start(count: 2)
        let balancer = try await RunningBalancer.start(for: cluster)
        // A console connection that is already open stays open when the node enters update mode
        // by an operator override: only new connections are routed by the new mode.
        let open = try await TestClient.connect(to: try balancer.address("console"))
        var iterator = open.inbound.makeAsyncIterator()
        try await open.outbound.write(
            ByteBuffer(string: "POST /console/login HTTP/1.1\r\nHost: u\r\nContent-Length: 0\r\n\r\n"))
        let first = try await iterator.next().map { String(buffer: $0) } ?? ""
        #expect(first.hasPrefix("HTTP/1.1 200"))
        let node = first.contains("\"ums1\"") ? "ums1" : "ums2"
        #expect(await balancer.balancer.overrideMode(.update, of: node, actor: "test"))
        try await open.outbound.write(
            ByteBuffer(string: "POST /console/login HTTP/1.1\r\nHost: u\r\nContent-Length: 0\r\n\r\n"))
        let second = try await iterator.next().map { String(buffer: $0) } ?? ""
        #expect(second.hasPrefix("HTTP/1.1 200"))
        let fresh = try await login(balancer)
        #expect(fresh?.json?["node"] as? String != node)
        await TestClient.close(open)
        try await balancer.stop()
        await cluster.stop()
    }
}
