import BalancerAdmin
import BalancerCore
import BalancerNIO
import BalancerTesting
import Foundation
import Synchronization
import Testing

@Suite(.serialized, .timeLimit(.minutes(2)))
struct AdminAPITests {
    @Test func statusShowsEveryNodeTheUpdateAndTheConfiguration() async throws {
        try await withAdminHarness { harness in
            try await harness.waitUntilProbed()
            let answer = try await harness.request("GET", "/status")
            #expect(answer.status == 200)
            #expect(answer.contentType.hasPrefix("application/json"))
            let json = try answer.json
            let nodes = try #require(json["nodes"] as? [[String: Any]])
            #expect(nodes.map { $0["id"] as? String } == ["ums1", "ums2", "ums3"])
            for node in nodes {
                #expect(node["mode"] as? String == "normal")
                #expect(node["health"] as? String == "up")
                #expect(node["admin"] as? String == "active")
                #expect(node["version"] as? String == "12.06.100")
                #expect(node["connections"] as? Int == 0)
                #expect(node["mode_override"] is NSNull)
                #expect(node["reconnect_drain"] as? Bool == false)
                #expect(node["install_drain"] as? Bool == false)
            }
            let update = try #require(json["update"] as? [String: Any])
            #expect(update["state"] as? String == "idle")
            #expect(update["target_version"] is NSNull)
            #expect(update["updated"] is Int && update["total"] is Int)
            #expect((update["flags"] as? [Any])?.isEmpty == true)
            #expect(update["last_run"] is NSNull)
            let config = try #require(json["config"] as? [String: Any])
            #expect(config["generation"] as? Int == 1)
            let lastReload = try #require(config["last_reload"] as? [String: Any])
            #expect(lastReload["ok"] as? Bool == true)
            #expect(lastReload["error"] is NSNull)
            let at = try #require(lastReload["at"] as? String)
            #expect(at.hasSuffix("Z") && (try? Date(at, strategy: .iso8601)) != nil)
        }
    }

    @Test func theDashboardShellNeedsNoTokenAndHoldsNoData() async throws {
        try await withAdminHarness { harness in
            let answer = try await harness.request("GET", "/", token: nil)
            #expect(answer.status == 200)
            #expect(answer.contentType.hasPrefix("text/html"))
            #expect(answer.body.contains("<title>UMS Balancer</title>"))
            #expect(answer.body.contains("sessionStorage"))
            #expect(!answer.body.contains("ums1") && !answer.body.contains("12.06.100"))
            #expect(
                !answer.body.contains("http://") && !answer.body.contains("https://"), "nothing loaded from elsewhere")
        }
    }

    static let protectedRoutes: [(String, String, String?)] = [
        ("GET", "/status", nil), ("GET", "/metrics", nil), ("GET", "/events", nil), ("POST", "/reload", nil),
        ("POST", "/nodes/ums1/drain", nil), ("POST", "/nodes/ums1/resume", nil),
        ("POST", "/nodes/ums1/maintenance", nil),
        ("PUT", "/nodes/ums1/mode", #"{"mode":"update"}"#), ("POST", "/update/retry-reconnect", nil),
        ("POST", "/update/end", nil),
        ("POST", "/nodes/nosuchnode/drain", nil), ("GET", "/no/such/route", nil), ("GET", "/index.html", nil),
        ("POST", "/", nil),
    ]

    @Test func everyRouteButTheDashboardRefusesAMissingOrWrongTokenAndChangesNothing() async throws {
        let reloads = Counter()
        try await withAdminHarness(reload: { balancer in
            reloads.increment()
            _ = try? await balancer.reload(to: balancer.configuration)
        }) { harness in
            try await harness.waitUntilProbed()
            let before = try await harness.get("/status", as: StatusDocument.self)
            for (method, path, body) in Self.protectedRoutes {
                for token in [nil, "wrong-token", AdminHarness.token + "x", "", String(AdminHarness.token.dropLast())] {
                    let answer = try await harness.request(method, path, token: token, body: body)
                    #expect(answer.status == 401, "\(method) \(path) with token \(String(describing: token))")
                    #expect(answer.contentType.hasPrefix("application/json"))
                    #expect((try? answer.json["error"] as? String)?.contains("token") == true)
                }
            }
            let after = try await harness.get("/status", as: StatusDocument.self)
            #expect(after.nodes == before.nodes)
            #expect(after.config.generation == 1)
            #expect(reloads.value == 0)
            let events = try await harness.get("/events?limit=1000", as: EventsDocument.self).events
            #expect(!events.contains { $0.actor.hasPrefix("admin-api") })
        }
    }

    @Test func drainResumeAndMaintenanceChangeTheAdminStateAndAreJournaledWithWhoDidIt() async throws {
        try await withAdminHarness { harness in
            try await harness.waitUntilProbed()
            for (action, state) in [("drain", "draining"), ("maintenance", "maintenance"), ("resume", "active")] {
                let answer = try await harness.request("POST", "/nodes/ums2/\(action)")
                #expect(answer.status == 200, "\(action): \(answer.body)")
                #expect(try answer.decode(StatusDocument.Node.self).admin == state)
                let status = try await harness.get("/status", as: StatusDocument.self)
                #expect(status.nodes.map(\.admin) == ["active", state, "active"])
            }
            for change in ["active -> draining", "draining -> maintenance", "maintenance -> active"] {
                let event = try await harness.waitForEvent(change) { $0.kind == "admin" && $0.message == change }
                #expect(event.node == "ums2")
                #expect(event.actor.range(of: #"^admin-api 127\.0\.0\.1:\d+$"#, options: .regularExpression) != nil)
            }
        }
    }

    @Test func aModeOverrideWinsUntilClearedAndIsJournaled() async throws {
        try await withAdminHarness { harness in
            try await harness.waitUntilProbed()
            let set = try await harness.request("PUT", "/nodes/ums3/mode", body: #"{"mode":"update"}"#)
            #expect(set.status == 200, "\(set.body)")
            var node = try await harness.get("/status", as: StatusDocument.self).nodes[2]
            #expect(node.mode == "update" && node.modeOverride == "update")

            let cleared = try await harness.request("PUT", "/nodes/ums3/mode", body: #"{"mode":null}"#)
            #expect(cleared.status == 200, "\(cleared.body)")
            node = try await harness.get("/status", as: StatusDocument.self).nodes[2]
            #expect(node.mode == "normal" && node.modeOverride == nil)

            let overridden = try await harness.waitForEvent("override") { $0.message == "mode overridden to update" }
            #expect(
                overridden.kind == "mode" && overridden.node == "ums3"
                    && overridden.actor.hasPrefix("admin-api 127.0.0.1:"))
            let clear = try await harness.waitForEvent("clear") { $0.message == "mode override cleared" }
            #expect(clear.actor.hasPrefix("admin-api 127.0.0.1:"))
        }
    }

    @Test(arguments: [#"{"mode":"maintenance"}"#, #"{"mode":"Normal"}"#, #"{"mode":3}"#, "{}", "not json", ""])
    func anInvalidModeIsABadRequestAndChangesNothing(_ body: String) async throws {
        try await withAdminHarness { harness in
            let answer = try await harness.request("PUT", "/nodes/ums1/mode", body: body)
            #expect(answer.status == 400)
            #expect((try answer.json["error"] as? String)?.contains("\"normal\"") == true)
            #expect(harness.balancer.directory.modeOverride(of: "ums1") == nil)
        }
    }

    @Test func anOversizedBodyIsRefusedBeforeItIsRead() async throws {
        try await withAdminHarness { harness in
            let body = #"{"mode":"normal","padding":""# + String(repeating: "x", count: 10_000) + #""}"#
            let answer = try await harness.request("PUT", "/nodes/ums1/mode", body: body)
            #expect(answer.status == 413)
            #expect(try answer.json["error"] is String)
            #expect(harness.balancer.directory.modeOverride(of: "ums1") == nil)
        }
    }

    @Test(arguments: [("POST", "drain"), ("POST", "resume"), ("POST", "maintenance"), ("PUT", "mode")])
    func anUnknownNodeIsA404(_ method: String, _ action: String) async throws {
        try await withAdminHarness { harness in
            let answer = try await harness.request(method, "/nodes/ums9/\(action)", body: #"{"mode":"normal"}"#)
            #expect(answer.status == 404)
            #expect(answer.body == #"{"error":"unknown node 'ums9'"}"#)
        }
    }

    @Test func anUnknownRouteIsA404WithAJSONError() async throws {
        try await withAdminHarness { harness in
            let answer = try await harness.request("GET", "/nodes")
            #expect(answer.status == 404)
            #expect(try answer.json["error"] as? String == "no route GET /nodes")
            #expect(try await harness.request("GET", "/nodes/ums1/drain").status == 404)
        }
    }

    @Test func retryingAReconnectThatIsNotStalledIsAConflict() async throws {
        try await withAdminHarness { harness in
            let answer = try await harness.request("POST", "/update/retry-reconnect")
            #expect(answer.status == 409)
            #expect((try answer.json["error"] as? String)?.contains("not stalled") == true)
        }
    }

    @Test func retryReconnectReArmsAStalledRunAndIsJournaled() async throws {
        var stalled = UpdateRun()
        stalled.state = .stalled
        stalled.startingVersion = "12.06.100"
        stalled.targetVersion = "12.07.100"
        stalled.startedAt = Date()
        var failed = NodeReconnect(phase: .failed, drainStartedAt: Date())
        failed.attempts = 5
        failed.lastAnswer = "409 not on the productive schema"
        stalled.reconnects = ["ums2": failed]
        // The nodes must still say what the run says (ums2 in update mode on 12.07.100), or the
        // first probes end it: a cluster back to normal on one version has no run left.
        try await withAdminHarness(initialRun: stalled, prepare: Self.ums2InUpdateMode) { harness in
            let before = try await harness.get("/status", as: StatusDocument.self).update
            #expect(before.state == "stalled")
            let reconnect = try #require(before.reconnects["ums2"])
            #expect(reconnect.phase == "failed" && reconnect.attempts == 5 && reconnect.lastAnswer == failed.lastAnswer)
            let metrics = try PrometheusText(try await harness.request("GET", "/metrics").body)
            #expect(metrics.samples("ums_balancer_update_state", ["state": "stalled"]).first?.value == 1)

            let answer = try await harness.request("POST", "/update/retry-reconnect")
            #expect(answer.status == 200, "\(answer.body)")
            #expect(try answer.decode(StatusDocument.Update.self).state != "stalled")
            let event = try await harness.waitForEvent("retry") {
                $0.message.contains("retry of the stalled reconnect")
            }
            #expect(event.kind == "reconnect" && event.actor.hasPrefix("admin-api 127.0.0.1:"))
        }
    }

    /// ums2 installs 12.07.100 and comes up in update mode; ums1 and ums3 stay on 12.06.100.
    @Sendable static func ums2InUpdateMode(_ cluster: SimulatedCluster) async throws {
        try await cluster.install("ums2", version: "12.07.100", seconds: 0.1)
        try await cluster.waitUntil("ums2 in update mode") { $0[1].mode == .update }
    }

    @Test func reloadRunsTheReloadAndReportsTheNewGeneration() async throws {
        let reloads = Counter()
        try await withAdminHarness(reload: { balancer in
            reloads.increment()
            _ = try? await balancer.reload(to: balancer.configuration)
        }) { harness in
            let answer = try await harness.request("POST", "/reload")
            #expect(answer.status == 200, "\(answer.body)")
            let config = try answer.decode(StatusDocument.Config.self)
            #expect(config.generation == 2 && config.lastReload.ok && config.lastReload.error == nil)
            #expect(reloads.value == 1)
            #expect(try await harness.get("/status", as: StatusDocument.self).config.generation == 2)
            let event = try await harness.waitForEvent("reload request") {
                $0.kind == "reload" && $0.actor != "balancer"
            }
            #expect(event.actor.hasPrefix("admin-api 127.0.0.1:"))
        }
    }

    @Test func aRejectedReloadIsA422AndKeepsTheGeneration() async throws {
        try await withAdminHarness(reload: { $0.reloadRejected("ums-balancer.yaml:3:7: unknown key 'listners'") }) {
            harness in
            let answer = try await harness.request("POST", "/reload")
            #expect(answer.status == 422)
            #expect(
                (try answer.json["error"] as? String)?.contains("ums-balancer.yaml:3:7: unknown key 'listners'") == true
            )
            let config = try await harness.get("/status", as: StatusDocument.self).config
            #expect(config.generation == 1)
            #expect(!config.lastReload.ok && config.lastReload.error == "ums-balancer.yaml:3:7: unknown key 'listners'")
        }
    }

    @Test func eventsPageWithLimitAndAfter() async throws {
        try await withAdminHarness { harness in
            for action in ["drain", "resume", "drain", "resume"] {
                #expect(try await harness.request("POST", "/nodes/ums1/\(action)").status == 200)
            }
            _ = try await harness.waitForEvent("the last resume") { $0.message == "draining -> active" && $0.id >= 4 }
            let all = try await harness.get("/events", as: EventsDocument.self)
            #expect(all.persistent && all.note == nil)
            #expect(all.events.map(\.id) == all.events.map(\.id).sorted())
            let lastTwo = try await harness.get("/events?limit=2", as: EventsDocument.self).events
            #expect(lastTwo.map(\.id) == Array(all.events.map(\.id).suffix(2)))
            let after = all.events[1].id
            let later = try await harness.get("/events?after=\(after)", as: EventsDocument.self).events
            #expect(later.map(\.id) == all.events.map(\.id).filter { $0 > after })
            for bad in ["limit=0", "limit=abc", "limit=5000", "after=-1", "after=x"] {
                #expect(try await harness.request("GET", "/events?\(bad)").status == 400, "\(bad)")
            }
        }
    }

    @Test func withoutAStateDatabaseEventsAreEmptyWithANote() async throws {
        try await withAdminHarness(withStore: false) { harness in
            let document = try await harness.get("/events", as: EventsDocument.self)
            #expect(document.events.isEmpty && !document.persistent)
            #expect(document.note?.contains("state") == true)
        }
    }
}

/// A count shared with a `@Sendable` closure.
final class Counter: Sendable {
    private let box = Mutex(0)
    var value: Int { box.withLock { $0 } }
    func increment() { box.withLock { $0 += 1 } }
}
