import BalancerAdmin
import BalancerCore
import BalancerTesting
import Foundation
import NIOCore
import Testing

/// The update run through the admin API: `POST /update/end`, `update.flags`, `update.last_run`
/// and the flag gauges, against a simulated cluster.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct UpdateRunAPITests {
    func status(_ harness: AdminHarness) async throws -> StatusDocument {
        try await harness.get("/status", as: StatusDocument.self)
    }

    func waitForStatus(
        _ harness: AdminHarness, _ what: String, timeout: Duration = .seconds(20),
        _ condition: (StatusDocument) -> Bool
    ) async throws -> StatusDocument {
        let deadline = ContinuousClock.now + timeout
        while true {
            let document = try await status(harness)
            if condition(document) { return document }
            guard ContinuousClock.now < deadline else { throw TestKitError("never \(what): \(document)") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    @Test func anOperatorEndsARunByHandButNotWhileANodeInstalls() async throws {
        try await withAdminHarness(prepare: AdminAPITests.ums2InUpdateMode) { harness in
            _ = try await waitForStatus(harness, "in progress") { $0.update.state == "in-progress" }

            // Long enough that the refusal below meets it installing on a loaded machine.
            try await harness.cluster.install("ums3", version: "12.07.100", seconds: 8)
            _ = try await waitForStatus(harness, "ums3 installing") { $0.nodes[2].mode == "installing" }
            let refused = try await harness.request("POST", "/update/end")
            #expect(refused.status == 409)
            #expect(
                try refused.json["error"] as? String
                    == "ums3 is installing: end the run once the installer has finished (or put the node in maintenance)"
            )
            #expect(try await status(harness).update.state == "in-progress")

            _ = try await waitForStatus(harness, "ums3 in update mode") { $0.nodes[2].mode == "update" }
            let ended = try await harness.request("POST", "/update/end")
            #expect(ended.status == 200, "\(ended.body)")
            let update = try ended.decode(StatusDocument.Update.self)
            #expect(update.state == "idle")
            let last = try #require(update.lastRun)
            #expect(last.outcome == "ended-by-operator" && last.targetVersion == "12.07.100")
            #expect(last.by?.range(of: #"^admin-api 127\.0\.0\.1:\d+$"#, options: .regularExpression) != nil)
            #expect(
                last.reason.hasSuffix(
                    "left as it stands: ums1 normal 12.06.100, ums2 update 12.07.100, ums3 update 12.07.100"))

            // The probes keep reporting the same cluster: it starts no new run.
            try await Task.sleep(for: .milliseconds(500))
            let after = try await status(harness)
            #expect(after.update.state == "idle" && after.update.lastRun == last)
            #expect(after.update.summary.hasPrefix("no update running; the last run ended ended-by-operator"))
            let event = try await harness.waitForEvent("the end") { $0.kind == "run" && $0.message.contains("-> idle") }
            #expect(event.message.hasPrefix("in-progress -> idle: ended-by-operator: ended by admin-api 127.0.0.1:"))
            #expect(event.actor == last.by)

            let again = try await harness.request("POST", "/update/end")
            #expect(again.status == 409)
            #expect(try again.json["error"] as? String == "the update run is idle: there is no run to end")
        }
    }

    @Test func withoutAReconnectActionANodeReconnectedByHandIsNotSaidToBeReleasedFromADrain() async throws {
        try await withAdminHarness { harness in
            try await harness.waitUntilProbed()
            try await harness.cluster.install("ums1", version: "12.07.100", seconds: 0.2)
            _ = try await waitForStatus(harness, "ums1 in update mode") { $0.nodes[0].mode == "update" }
            try await harness.cluster.install("ums2", version: "12.07.100", seconds: 0.2)
            _ = try await waitForStatus(harness, "ums2 in update mode") { $0.nodes[1].mode == "update" }
            try await harness.cluster.install("ums3", version: "12.07.100", seconds: 0.2)
            let reconnecting = try await waitForStatus(harness, "reconnecting") { $0.update.state == "reconnecting" }
            #expect(!reconnecting.nodes[0].reconnectDrain, "no action: the run drains nothing")

            // The operator reconnects ums1 by hand, as the run asks.
            let control = try SocketAddress(
                ipAddress: harness.cluster.node("ums1").configuration.host, port: harness.cluster.controlPort)
            let answer = try await TestHTTP.request("POST", "/control/reconnect", to: control)
            #expect(answer.status == 202, "\(answer.body)")
            let back = try await harness.waitForEvent("ums1 back") { $0.kind == "release" && $0.node == "ums1" }
            #expect(back.message == "back from its reconnect (not drained by the balancer); slow start over 30s")

            // Ended by hand with ums2 still in update mode: nothing was held and it is not back.
            let ended = try await harness.request("POST", "/update/end")
            #expect(ended.status == 200, "\(ended.body)")
            let events = try await harness.get("/events?limit=1000", as: EventsDocument.self).events
            #expect(!events.contains { $0.kind == "release" && $0.node == "ums2" }, "\(events.map(\.message))")
        }
    }

    @Test func aNodeInstallingPastInstallTimeoutIsFlaggedInStatusMetricsAndTheJournalOnce() async throws {
        try await withAdminHarness(configure: { $0.update.installTimeout = .seconds(1) }) { harness in
            try await harness.waitUntilProbed()
            try await harness.cluster.install("ums3", version: "12.07.100", seconds: 6)
            let flagged = try await waitForStatus(harness, "flagged", timeout: .seconds(5)) { !$0.update.flags.isEmpty }
            #expect(flagged.update.flags == ["install-overdue:ums3"])
            #expect(flagged.update.state == "in-progress")
            #expect(flagged.nodes[2].mode == "installing")

            let metrics = try PrometheusText(try await harness.request("GET", "/metrics").body)
            #expect(metrics.samples("ums_balancer_update_install_overdue", ["node": "ums3"]).first?.value == 1)
            #expect(metrics.samples("ums_balancer_update_install_overdue", ["node": "ums1"]).first?.value == 0)
            #expect(metrics.samples("ums_balancer_update_overdue").first?.value == 0)

            _ = try await waitForStatus(harness, "ums3 installed") { $0.nodes[2].mode == "update" }
            let cleared = try await waitForStatus(harness, "flag cleared") { $0.update.flags.isEmpty }
            #expect(cleared.update.state == "in-progress")
            let clearEvent = try await harness.waitForEvent("cleared") {
                $0.kind == "flag" && $0.message.hasPrefix("cleared")
            }
            #expect(clearEvent.message == "cleared install-overdue:ums3: ums3 is no longer installing")
            #expect(clearEvent.node == "ums3")
            let events = try await harness.get("/events?limit=1000", as: EventsDocument.self).events
            let raised = events.filter { $0.kind == "flag" && $0.message.hasPrefix("flagged install-overdue:ums3") }
            #expect(raised.count == 1, "said once, not per tick: \(raised.map(\.message))")
            #expect(
                raised.first?.message.contains("longer than update.install_timeout (1s)") == true,
                "\(raised.map(\.message))")
        }
    }
}
