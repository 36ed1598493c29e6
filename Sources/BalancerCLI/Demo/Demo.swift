import AsyncHTTPClient
import BalancerApp
import BalancerCore
import BalancerNIO
import BalancerStore
import Foundation
import Logging
import NIOCore
import NIOPosix
import UMSNodeSimulator

/// The demo's script: a simulated cluster, the balancer, devices and consoles, and the admin
/// installing the new version server by server.
final class Demo: Sendable {
    struct Settings: Sendable {
        var nodes: Int
        var devices: Int
        var webSocketDevices: Int
        var speed: Double
        var consolePolicy: ConsolePolicy
        var fromVersion: String
        var toVersion: String
        /// The balancer drives the update (`update start`) instead of the scripted admin.
        var drive = false

        /// A duration scaled by the speed factor.
        func scaled(_ seconds: Double) -> Duration {
            .milliseconds(Int64(seconds * 1000 / speed))
        }
    }

    let settings: Settings
    let screen = DemoScreen()

    init(settings: Settings) {
        self.settings = settings
    }

    /// Runs the whole demo; true when no device request failed and no WebSocket message was lost.
    func run() async throws -> Bool {
        let quiet = Logger(label: "demo", factory: { _ in SwiftLogNoOpLogHandler() })
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let dataDirectory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "ums-demo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dataDirectory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dataDirectory) }

        screen.say("Starting \(settings.nodes) simulated UMS Servers on \(settings.fromVersion)...")
        let cluster = try await DemoCluster.start(
            count: settings.nodes, version: settings.fromVersion, dataDirectory: dataDirectory,
            reconnectSeconds: 1 / settings.speed, group: group, logger: quiet)
        let store = try StateStore(path: dataDirectory.appendingPathComponent("balancer.sqlite").path)
        let configuration = try await cluster.balancerConfiguration(settings)
        var options = BalancerApp.Options(logger: quiet)
        options.store = store
        options.eventLoopGroup = group
        let app = try await BalancerApp.build(configuration: configuration, options: options)
        let balancer = app.balancer
        let serviceTask = Task { try await app.run() }
        try await balancer.listening.get()
        let devicesAddress = try SocketAddress(ipAddress: "127.0.0.1", port: configuration.listeners[0].bind.port)
        let consoleAddress = try SocketAddress(ipAddress: "127.0.0.1", port: configuration.listeners[1].bind.port)
        let webSocketAddress = try SocketAddress(ipAddress: "127.0.0.1", port: configuration.listeners[2].bind.port)
        screen.say(
            "Balancer listening: devices on \(devicesAddress.port!), consoles on \(consoleAddress.port!), "
                + "device WebSockets on \(webSocketAddress.port!); console policy \(settings.consolePolicy.rawValue)")

        let traffic = DemoTraffic(
            devicesAddress: devicesAddress, consoleAddress: consoleAddress, devices: settings.devices,
            speed: settings.speed, group: group)
        let webSockets = DemoWebSocketDevices(
            address: webSocketAddress, devices: settings.webSocketDevices, speed: settings.speed, group: group)
        traffic.start()
        webSockets.start()
        let started = ContinuousClock.now
        let display = Task {
            await self.showProgress(
                balancer: balancer, cluster: cluster, traffic: traffic, webSockets: webSockets, store: store,
                since: started)
        }

        var outcome = "completed"
        do {
            try await Task.sleep(for: settings.scaled(2))
            if settings.drive { try await drive(balancer) }
            for node in cluster.nodes where !settings.drive {
                screen.event("admin: running the installer for \(settings.toVersion) on \(node.configuration.id)")
                try await cluster.install(node, version: settings.toVersion, seconds: 3 / settings.speed)
                try await cluster.waitUntil(timeout: .seconds(60)) {
                    node.version.text == self.settings.toVersion && [.update, .normal].contains(node.mode)
                }
                screen.event(
                    "\(node.configuration.id) is back: \(node.mode) mode on \(node.version) (\(node.database.rawValue) database)"
                )
                try await Task.sleep(for: settings.scaled(1.5))
            }
            try await waitForCompletion(balancer, timeout: .seconds(60))
            try await Task.sleep(for: settings.scaled(2))
        } catch {
            outcome = "did not complete: \(error)"
        }

        let counts = await traffic.stop()
        let webSocketCounts = await webSockets.stop()
        display.cancel()
        _ = await display.result
        let run = await balancer.updateRun()
        let events = (try? await store.events(limit: 500)) ?? []
        let finalNodes = balancer.directory.snapshot().map(\.status)
        let loginsInUpdateMode = cluster.nodes.map(\.consoleLoginsInUpdateMode).reduce(0, +)
        await app.shutDown()
        _ = try? await serviceTask.value
        await cluster.stop()
        try? await group.shutdownGracefully()

        return screen.summary(
            DemoSummary(
                elapsed: ContinuousClock.now - started, outcome: outcome, run: run, traffic: counts,
                webSocketDevices: settings.webSocketDevices, webSockets: webSocketCounts, nodes: finalNodes,
                loginsInUpdateMode: loginsInUpdateMode, events: events,
                started: Date() - (ContinuousClock.now - started).seconds))
    }

    private func waitForCompletion(_ balancer: Balancer, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while await balancer.updateRun().state != .completed {
            guard ContinuousClock.now < deadline else {
                throw DemoError("the update did not complete within \(timeout): \(await balancer.updateRun().summary)")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    private func showProgress(
        balancer: Balancer, cluster: DemoCluster, traffic: DemoTraffic, webSockets: DemoWebSocketDevices,
        store: StateStore,
        since started: ContinuousClock.Instant
    ) async {
        var lastEvent: Int64 = 0
        while !Task.isCancelled {
            if let events = try? await store.events(limit: 50, after: lastEvent) {
                for event in events {
                    lastEvent = event.id ?? lastEvent
                    if let line = DemoScreen.narrate(event) { screen.event(line) }
                }
            }
            let run = await balancer.updateRun()
            screen.status(
                elapsed: ContinuousClock.now - started, nodes: balancer.directory.snapshot(), run: run,
                traffic: traffic.counts, webSockets: webSockets.counts)
            try? await Task.sleep(for: .milliseconds(250))
        }
    }
}

/// Why the demo could not go on.
struct DemoError: Error, CustomStringConvertible {
    var description: String

    init(_ description: String) {
        self.description = description
    }
}
