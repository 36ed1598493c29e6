import ArgumentParser
import BalancerCore
import Foundation

/// `ums-balancer demo`: a complete rolling update of a simulated cluster, live.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run a simulated UMS cluster behind the balancer through a complete rolling update.",
        discussion: """
            Starts simulated UMS Servers on 127.0.0.11, .12, ..., the balancer in front of them, simulated \
            devices and consoles, then installs a new version server by server while showing what devices \
            and consoles experience. Exits 0 only if no device request failed and every WebSocket device's \
            message got its echo (after a reconnect, if its WebSocket was closed meanwhile).
            """
    )

    @Option(help: "Number of simulated UMS Servers (2-9).")
    var nodes = 3

    @Option(help: "Number of simulated devices, each asking for its profile on a new connection, again and again.")
    var devices = 4

    @Option(
        name: .customLong("websocket-devices"),
        help: "Number of IGEL OS 12 devices holding a long-lived WebSocket, sending a message now and then.")
    var webSocketDevices = 4

    @Option(help: "Speed factor: 2 runs twice as fast, 0.5 half as fast.")
    var speed = 1.0

    @Option(help: "Console policy during the update: normal-only, freeze or allow.")
    var consolePolicy: String = ConsolePolicy.normalOnly.rawValue

    @Option(help: "The version the servers run before the update.")
    var fromVersion = "12.06.100"

    @Option(help: "The version installed.")
    var toVersion = "12.07.100"

    @Flag(help: "Let the balancer drive the update (ums-balancer update start) instead of a scripted admin.")
    var drive = false

    func validate() throws {
        guard (2...9).contains(nodes) else { throw ValidationError("--nodes must be between 2 and 9") }
        guard (1...64).contains(devices) else { throw ValidationError("--devices must be between 1 and 64") }
        guard (0...64).contains(webSocketDevices) else {
            throw ValidationError("--websocket-devices must be between 0 and 64")
        }
        guard speed >= 0.1 && speed <= 10 else { throw ValidationError("--speed must be between 0.1 and 10") }
        guard ConsolePolicy(rawValue: consolePolicy) != nil else {
            throw ValidationError("--console-policy must be normal-only, freeze or allow")
        }
        guard let from = Version(fromVersion), let to = Version(toVersion), from < to else {
            throw ValidationError("--to-version must be a version higher than --from-version")
        }
    }

    func run() async throws {
        let demo = Demo(
            settings: Demo.Settings(
                nodes: nodes, devices: devices, webSocketDevices: webSocketDevices, speed: speed,
                consolePolicy: ConsolePolicy(rawValue: consolePolicy)!,
                fromVersion: fromVersion, toVersion: toVersion, drive: drive))
        let succeeded = try await demo.run()
        if !succeeded { throw ExitCode(1) }
    }
}
