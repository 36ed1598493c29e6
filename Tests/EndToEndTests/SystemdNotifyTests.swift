import BalancerTesting
import Foundation
import NIOCore
import Testing

/// `Type=notify` as systemd sees it, against a `NOTIFY_SOCKET` the test binds.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct SystemdNotifyTests {
    func config(listenPort: Int, backendPort: Int, adminPort: Int) -> String {
        """
        listeners:
          - { name: devices, bind: 127.0.0.1:\(listenPort), backend_port: \(backendPort), class: device }
        nodes:
          - { id: ums1, host: 127.0.0.1 }
        health: { interval: 1h, timeout: 5s }
        status:
          command: [/bin/sh, -c, "sleep 2; echo '{\\"id\\":\\"{id}\\",\\"mode\\":\\"normal\\"}'"]
        admin: { bind: 127.0.0.1:\(adminPort) }
        shutdown_grace: 5s
        threads: 1
        """
    }

    @Test func readyOnlyOnceTheListenerAcceptsReloadsReportedAndStoppingAtShutdown() async throws {
        let backend = try await TestBackend.start(name: "ums1", behavior: .echo)
        let folder = try TemporaryDirectory()
        let notify = try NotifySocket(in: folder)
        let (listenPort, adminPort) = (try FreePort.pick(), try FreePort.pick())
        let good = config(listenPort: listenPort, backendPort: backend.port, adminPort: adminPort)
        let path = try folder.write("b.yaml", good)
        let process = try await ProcessHarness(
            "ums-balancer", ["run", "--config", path],
            environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"])
        defer {
            process.kill()
            folder.remove()
        }
        let listener = try SocketAddress(ipAddress: "127.0.0.1", port: listenPort)

        // Starting: a STATUS line, no READY, and nothing accepts yet.
        try await notify.waitFor("STATUS=starting") { $0.contains("STATUS=starting") }
        #expect(!notify.messages.contains { $0.contains("READY=1") })
        await #expect(throws: (any Error).self) { try await TestClient.close(TestClient.connect(to: listener)) }

        let ready = try await notify.waitFor("READY=1") { $0.split(separator: "\n").contains("READY=1") }
        // The moment systemd hears READY the listener accepts and proxies.
        let connection = try await TestClient.connect(to: listener)
        try await connection.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "ping"))
            outbound.finish()
            #expect(String(buffer: try await TestClient.readAll(inbound)) == "ping")
        }
        #expect(notify.messages[ready].contains("STATUS=no update recorded"), "\(notify.messages[ready])")
        // WatchdogSec=1s: a WATCHDOG=1 at least every half second or so.
        try await notify.waitFor(after: ready, timeout: .seconds(3), "WATCHDOG=1") { $0.contains("WATCHDOG=1") }

        // An accepted reload: RELOADING=1 with the monotonic time, then READY=1; `reload` exits 0.
        let beforeReload = notify.messages.count
        let accepted = try await ProcessHarness.run("ums-balancer", ["reload", "--config", path])
        #expect(accepted.status == 0, "\(accepted.output)")
        let reloading = try await notify.waitFor(after: beforeReload, "RELOADING=1") { $0.contains("RELOADING=1") }
        let fields = notify.messages[reloading].split(separator: "\n")
        let monotonic = fields.first { $0.hasPrefix("MONOTONIC_USEC=") }.flatMap { UInt64($0.dropFirst(15)) }
        #expect((monotonic ?? 0) > 0, "\(fields)")
        try await notify.waitFor(after: reloading, "READY=1 after the reload") { $0.contains("READY=1") }

        // A rejected reload: `reload` (the unit's ExecReload) exits 1, and STATUS says why.
        _ = try folder.write("b.yaml", good.replacingOccurrences(of: "threads: 1", with: "threads: none"))
        let beforeRejected = notify.messages.count
        let rejected = try await ProcessHarness.run("ums-balancer", ["reload", "--config", path])
        #expect(rejected.status == 1)
        #expect(rejected.output.contains("threads must be a whole number"), "\(rejected.output)")
        let again = try await notify.waitFor(after: beforeRejected, "RELOADING=1") { $0.contains("RELOADING=1") }
        let after = try await notify.waitFor(after: again, "READY=1 after the rejected reload") {
            $0.contains("READY=1")
        }
        #expect(notify.messages[after].contains("last reload rejected: \(path):"), "\(notify.messages[after])")

        let beforeStop = notify.messages.count
        process.send(SIGTERM)
        try await notify.waitFor(after: beforeStop, "STOPPING=1") { $0.contains("STOPPING=1") }
        #expect(try await process.waitForExit(timeout: .seconds(15)) == 0)
        await backend.stop()
    }

    @Test func statusShowsTheUpdatesProgressAsTheNodesReportIt() async throws {
        let backend = try await TestBackend.start(name: "ums1", behavior: .echo)
        let folder = try TemporaryDirectory()
        let notify = try NotifySocket(in: folder)
        for node in ["ums1", "ums2"] {
            _ = try folder.write("\(node).json", #"{"mode":"normal","version":"12.06.100"}"#)
        }
        let listenPort = try FreePort.pick()
        // Each node's status is what its file says: the test plays the nodes' update.
        let path = try folder.write(
            "b.yaml",
            """
            listeners:
              - { name: devices, bind: 127.0.0.1:\(listenPort), backend_port: \(backend.port), class: device }
            nodes:
              - { id: ums1, host: 127.0.0.1 }
              - { id: ums2, host: 127.0.0.2 }
            health: { interval: 100ms, timeout: 5s, rise: 1 }
            status: { command: [/bin/cat, "\(folder.url.path)/{id}.json"] }
            shutdown_grace: 1s
            threads: 1
            """)
        let process = try await ProcessHarness(
            "ums-balancer", ["run", "--config", path], environment: ["NOTIFY_SOCKET": notify.path])
        defer {
            process.kill()
            folder.remove()
        }
        let ready = try await notify.waitFor("READY=1") { $0.split(separator: "\n").contains("READY=1") }
        #expect(notify.messages[ready].contains("STATUS=no update recorded"), "\(notify.messages[ready])")

        // ums1 installs the new version and comes up in update mode: systemctl status says so.
        _ = try folder.write("ums1.json", #"{"mode":"installing","version":"12.06.100"}"#)
        try await notify.waitFor(after: ready, "STATUS= of a run under way") {
            $0.contains("STATUS=update (version not yet known): 0 of 2 servers updated")
        }
        _ = try folder.write("ums1.json", #"{"mode":"update","version":"12.07.100"}"#)
        try await notify.waitFor(after: ready, "STATUS= with the count") {
            $0.contains("STATUS=update 12.07.100: 1 of 2 servers updated")
        }
        process.send(SIGTERM)
        #expect(try await process.waitForExit(timeout: .seconds(15)) == 0)
        await backend.stop()
    }
}
