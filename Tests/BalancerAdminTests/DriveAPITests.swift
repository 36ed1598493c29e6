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
