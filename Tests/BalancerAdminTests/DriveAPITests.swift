import BalancerAdmin
import BalancerCore
import BalancerTesting
import Foundation
import Testing

/// `POST /update/start|pause|resume|abort` against a simulated cluster: the drive document, 409s
/// that say why, and `/status` `update.drive` showing where the drive stands.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct DriveAPITests {
    /// The install and reconnect actions of the simulated nodes, from the status URL the harness set.
    static func drivable(_ configuration: inout BalancerConfiguration) {
        guard case .url(let status)? = configuration.status?.action else { return }
        let control = status.replacingOccurrences(of: "/status", with: "")
        configuration.install = InstallSettings(
            action: .url(control + "/control/install?version={version}&seconds=0.3"))
        var reconnect = ReconnectSettings(action: .url(control + "/control/reconnect"))
        reconnect.timeout = .seconds(20)
        configuration.reconnect = reconnect
        configuration.update.drainTimeout = .milliseconds(300)
        configuration.update.slowStart = .milliseconds(300)
        configuration.update.canaryConnections = 5
    }

    func drive(_ answer: AdminHarness.Answer) throws -> DriveDocument {
        try answer.decode(DriveDocument.self)
    }

    func error(_ answer: AdminHarness.Answer) throws -> String? {
        try answer.json["error"] as? String
    }

    @Test func startIsRefusedWithoutAnInstallActionAndForABadBody() async throws {
        try await withAdminHarness { harness in
            try await harness.waitUntilProbed()
            let refused = try await harness.request("POST", "/update/start", body: #"{"version": "12.07.100"}"#)
            #expect(refused.status == 409)
            #expect(try error(refused)?.hasPrefix("no install action for ums1, ums2, ums3: add `install:") == true)
            let bad = try await harness.request("POST", "/update/start", body: #"{"version": 12}"#)
            #expect(bad.status == 400)
            let version = try await harness.request("POST", "/update/start", body: #"{"version": "twelve"}"#)
            #expect(version.status == 400)
            #expect(try error(version) == "version 'twelve' is not a version (dot-separated integers, e.g. 12.07.100)")
            let pause = try await harness.request("POST", "/update/pause")
            #expect(pause.status == 409)
            #expect(try error(pause) == "no driven update: start one with ums-balancer update start --version V")
            let plan = try await harness.get("/update/plan", as: PlanDocument.self)
            #expect(plan.checks.last?.name == "install" && plan.checks.last?.result == "warn")
        }
    }

    @Test func aDrivenUpdateIsPausedResumedAndCompletesInStatus() async throws {
        try await withAdminHarness(configure: Self.drivable) { harness in
            try await harness.waitUntilProbed()
            let load = DeviceLoad.start(address: try #require(harness.balancer.localAddress(ofListener: "devices")))
            let started = try await harness.request("POST", "/update/start", body: #"{"version": "12.07.100"}"#)
            #expect(started.status == 200, "\(started.body)")
            let document = try drive(started)
            #expect(document.state == "running" && document.startedBy.hasPrefix("admin-api 127.0.0.1:"))
            #expect(document.steps.map(\.node) == ["ums1", "ums2", "ums3"])
            #expect(document.steps.map(\.position) == ["now", "next", "next"])
            #expect(document.steps.map(\.role) == ["update-mode", "update-mode", "last"])

            let again = try await harness.request("POST", "/update/start", body: #"{"version": "12.07.100"}"#)
            #expect(again.status == 409)
            #expect(try error(again)?.hasPrefix("a driven update to 12.07.100 is running") == true)

            let paused = try await harness.request("POST", "/update/pause")
            #expect(
                try drive(paused).state == "paused" && drive(paused).reason?.hasPrefix("paused by admin-api") == true)
            // ums1 goes on; nothing starts after it.
            let held = try await waitForStatus(harness, "ums1 done while paused") {
                $0.update.drive?.steps.first?.position == "done"
            }
            #expect(held.update.drive?.state == "paused")
            try await Task.sleep(for: .milliseconds(500))
            #expect(harness.cluster.nodes.map(\.installRequests) == [1, 0, 0])
            let resumed = try await harness.request("POST", "/update/resume")
            #expect(try drive(resumed).state == "running", "\(resumed.body)")

            let done = try await waitForStatus(harness, "completed", timeout: .seconds(60)) {
                $0.update.drive?.state == "completed"
            }
            #expect(done.update.state == "completed")
            let finished = try #require(done.update.drive)
            #expect(finished.steps.allSatisfy { $0.position == "done" && $0.seconds != nil }, "\(finished.steps)")
            #expect(finished.reconnect.position == "done")
            #expect(harness.cluster.nodes.map(\.installRequests) == [1, 1, 1])
            let metrics = try PrometheusText(try await harness.request("GET", "/metrics").body)
            #expect(metrics.samples("ums_balancer_update_drive_state", ["state": "completed"]).first?.value == 1)
            #expect(metrics.samples("ums_balancer_update_drive_stalled").first?.value == 0)
            let abort = try await harness.request("POST", "/update/abort")
            #expect(abort.status == 409)
            #expect(
                try error(abort)
                    == "no driven update under way (the last one is completed): start one with update start --version V"
            )
            let summary = await load.stop()
            #expect(summary.failures.isEmpty, "\(summary.failures.prefix(3))")
            _ = try await harness.waitForEvent("the drive's completion") {
                $0.kind == "drive" && $0.message.hasPrefix("running -> completed")
            }
        }
    }

    @Test func abortStopsTheDriveAndLeavesTheRunTracked() async throws {
        try await withAdminHarness(configure: Self.drivable) { harness in
            try await harness.waitUntilProbed()
            _ = try await harness.request("POST", "/update/start", body: #"{"version": "12.07.100"}"#)
            let aborted = try await harness.request("POST", "/update/abort")
            #expect(aborted.status == 200, "\(aborted.body)")
            #expect(try drive(aborted).state == "aborted")
            #expect(try drive(aborted).reason?.hasPrefix("aborted by admin-api 127.0.0.1:") == true)
            // ums1's installer runs on; the run is tracked as without a drive, and no other node installs.
            let tracked = try await waitForStatus(harness, "ums1 in update mode") { $0.nodes[0].mode == "update" }
            #expect(tracked.update.state == "in-progress")
            #expect(tracked.update.drive?.state == "aborted")
            try await Task.sleep(for: .milliseconds(500))
            #expect(harness.cluster.nodes.map(\.installRequests) == [1, 0, 0])
        }
    }

    /// Opens device connections through the balancer until ums1 holds one (least connections
    /// spreads them over the nodes); returns them all, open.
    func holdAConnectionOnUMS1(_ harness: AdminHarness) async throws -> [TestClient.Connection] {
        let devices = try #require(harness.balancer.localAddress(ofListener: "devices"))
        var held: [TestClient.Connection] = []
        while try await harness.get("/status", as: StatusDocument.self).nodes[0].connections == 0 {
            guard held.count < 10 else { throw TestKitError("ten connections and none on ums1") }
            held.append(try await TestClient.connect(to: devices))
            try await Task.sleep(for: .milliseconds(100))
        }
        return held
    }

    @Test func aNodeIsDrainedBeforeItsInstallWhichIsCalledOnlyOnceItsConnectionsHaveClosed() async throws {
        try await withAdminHarness(configure: {
            Self.drivable(&$0)
            $0.update.drainTimeout = .seconds(60)
        }) { harness in
            try await harness.waitUntilProbed()
            var held = try await holdAConnectionOnUMS1(harness)
            let started = try await harness.request("POST", "/update/start", body: #"{"version": "12.07.100"}"#)
            #expect(started.status == 200, "\(started.body)")
            let draining = try await waitForStatus(harness, "ums1 drained for its install") { $0.nodes[0].installDrain }
            #expect(draining.update.drive?.steps.first?.phase == "draining")
            #expect(!draining.nodes[1].installDrain && !draining.nodes[2].installDrain)
            let metrics = try PrometheusText(try await harness.request("GET", "/metrics").body)
            #expect(metrics.samples("ums_balancer_node_install_drain", ["node": "ums1"]).first?.value == 1)
            #expect(metrics.samples("ums_balancer_node_install_drain", ["node": "ums2"]).first?.value == 0)

            // New device connections go to the other servers while ums1's stays open.
            let devices = try #require(harness.balancer.localAddress(ofListener: "devices"))
            for _ in 0..<4 { held.append(try await TestClient.connect(to: devices)) }
            try await Task.sleep(for: .milliseconds(500))
            let meanwhile = try await harness.get("/status", as: StatusDocument.self)
            #expect(meanwhile.nodes[0].connections == 1)
            #expect(meanwhile.nodes[1].connections + meanwhile.nodes[2].connections == held.count - 1)
            #expect(harness.cluster.nodes.map(\.installRequests) == [0, 0, 0], "no install while a connection is open")

            for connection in held { await TestClient.close(connection) }
            try await harness.cluster.waitUntil("ums1's install was called", timeout: .seconds(5)) {
                $0[0].installRequests == 1
            }
            _ = try await harness.waitForEvent("the drain in the journal") {
                $0.kind == "drain" && $0.node == "ums1"
                    && $0.message.hasPrefix("drained for its install: 1 connections open")
            }
            let back = try await waitForStatus(harness, "ums1 back and lifted", timeout: .seconds(20)) {
                $0.nodes[0].mode == "update" && !$0.nodes[0].installDrain
            }
            #expect(back.nodes[0].health == "up")
        }
    }

    @Test func pastTheDrainTimeoutTheBalancerClosesWhatIsLeftAtTheDrainRateThenCallsTheInstall() async throws {
        try await withAdminHarness(configure: {
            Self.drivable(&$0)
            $0.update.drainTimeout = .milliseconds(500)
            $0.update.drainRate = 10
        }) { harness in
            try await harness.waitUntilProbed()
            let held = try await holdAConnectionOnUMS1(harness)
            defer { Task { for connection in held { await TestClient.close(connection) } } }
            _ = try await harness.request("POST", "/update/start", body: #"{"version": "12.07.100"}"#)
            try await harness.cluster.waitUntil("ums1's install was called", timeout: .seconds(10)) {
                $0[0].installRequests == 1
            }
            let events = try await harness.get("/events?limit=1000", as: EventsDocument.self).events
                .filter { $0.node == "ums1" }.sorted { $0.id < $1.id }.map(\.message)
            let closing = events.firstIndex {
                $0 == "drain timeout before the install: closing 1 connections, 10 per second"
            }
            let called = events.firstIndex { $0.hasPrefix("install of 12.07.100 requested") }
            #expect(closing != nil && called != nil && closing! < called!, "\(events)")
            let status = try await harness.get("/status", as: StatusDocument.self)
            #expect(
                status.nodes[1].connections + status.nodes[2].connections == held.count - 1,
                "only ums1's connection is closed")
        }
    }

    func waitForStatus(
        _ harness: AdminHarness, _ what: String, timeout: Duration = .seconds(20),
        _ condition: (StatusDocument) -> Bool
    ) async throws -> StatusDocument {
        let deadline = ContinuousClock.now + timeout
        while true {
            let document = try await harness.get("/status", as: StatusDocument.self)
            if condition(document) { return document }
            guard ContinuousClock.now < deadline else { throw TestKitError("never \(what): \(document.update)") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}
