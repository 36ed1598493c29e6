import BalancerTesting
import Foundation
import NIOCore
import Testing

/// Socket activation: the balancer serves on the listening socket systemd bound and passed
/// (`LISTEN_FDS`, named by `FileDescriptorName=`), so clients that connect before it runs (a start,
/// a restart, an upgrade of the binary) wait in the kernel's queue instead of being refused.
/// `systemd-socket-activate` passes them exactly as PID 1 does for a `.socket` unit.
@Suite(.timeLimit(.minutes(2)))
struct SystemdSocketTests {
    @Test func aDeviceThatConnectsBeforeTheBalancerRunsIsServedOnThePassedSocket() async throws {
        let activate = "/usr/bin/systemd-socket-activate"
        #expect(
            FileManager.default.isExecutableFile(atPath: activate),
            "systemd-socket-activate (package systemd) is missing")
        let cluster = try await NodeProcessCluster.start(count: 2)
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let configuredPort = try FreePort.pick()
        let passedPort = try FreePort.pick()
        let path = try dir.write(
            "b.yaml",
            """
            listeners:
              - { name: devices, bind: 127.0.0.1:\(configuredPort), backend_port: \(cluster.devicePort), class: device }
            nodes:
            \(cluster.nodesYAML)
            health: { interval: 100ms, timeout: 1s, rise: 1, fall: 2 }
            status: { url: "\(cluster.statusURL)" }
            shutdown_grace: 1s
            threads: 2
            """)
        // Launches the balancer on the first connection, with the listening socket as descriptor 3.
        let balancer = try await ProcessHarness(
            path: URL(fileURLWithPath: activate),
            [
                "--listen=127.0.0.1:\(passedPort)", "--fdname=devices",
                ProcessHarness.productsDirectory.appendingPathComponent("ums-balancer").path, "run", "--config", path,
            ])
        defer { balancer.kill() }
        try await Task.sleep(for: .milliseconds(300))

        let device = try SocketAddress(ipAddress: "127.0.0.1", port: passedPort)
        let answer = try await TestHTTP.request("GET", "/device/00E0C5000001/profile", to: device)
        #expect(answer.status == 200, "\(answer.body)")
        #expect(["ums1", "ums2"].contains(answer.json?["node"] as? String ?? ""), "\(answer.body)")
        try await balancer.waitForOutput("socket=systemd")
        #expect(balancer.output.contains("listener=devices"), "\(balancer.output)")
        // The configured bind was not used: the passed socket is the listener.
        let configured = try SocketAddress(ipAddress: "127.0.0.1", port: configuredPort)
        await #expect(throws: (any Error).self) { _ = try await TestHTTP.request("GET", "/", to: configured) }

        balancer.send(SIGTERM)
        #expect(try await balancer.waitForExit() == 0, "\(balancer.output)")
        await cluster.stop()
    }

    @Test func aPassedSocketNoListenerIsNamedForStopsTheStart() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = try dir.write(
            "b.yaml",
            """
            listeners: [{ name: devices, bind: 127.0.0.1:\(try FreePort.pick()), backend_port: 30001, class: device }]
            nodes: [{ id: ums1, host: 127.0.0.11 }]
            """)
        let passedPort = try FreePort.pick()
        let balancer = try await ProcessHarness(
            path: URL(fileURLWithPath: "/usr/bin/systemd-socket-activate"),
            [
                "--listen=127.0.0.1:\(passedPort)", "--fdname=devcies",
                ProcessHarness.productsDirectory.appendingPathComponent("ums-balancer").path, "run", "--config", path,
            ])
        defer { balancer.kill() }
        try await Task.sleep(for: .milliseconds(300))
        _ = try? await TestHTTP.request("GET", "/", to: try SocketAddress(ipAddress: "127.0.0.1", port: passedPort))
        #expect(try await balancer.waitForExit() == 1)
        #expect(
            balancer.output.contains(
                "systemd passed sockets named devcies, but no listener has that name (listeners: devices)"),
            "\(balancer.output)")
    }
}
