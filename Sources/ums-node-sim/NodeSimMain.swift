import ArgumentParser
import Dispatch
import Foundation
import Logging
import UMSNodeSimulator

/// `ums-node-sim`: runs one simulated UMS Server until SIGTERM or SIGINT.
@main
struct NodeSimMain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ums-node-sim",
        abstract: "A simulated IGEL UMS Server for demos and tests.")

    @Option(help: "The node's id, e.g. ums1.")
    var id: String

    @Option(help: "The address to listen on; a simulated cluster gives each node its own loopback address.")
    var host = "127.0.0.1"

    @Option(help: "The device port.")
    var devicePort: Int

    @Option(help: "The console port (plays a real server's 8443).")
    var consolePort: Int

    @Option(help: "The control (watchdog) port.")
    var controlPort: Int

    @Option(help: "The directory holding productive.sqlite and the local copies.")
    var dataDir: String

    @Option(help: "The version the node starts on.")
    var version = "12.06.100"

    @Option(help: "How long the node stays reconnecting, in seconds.")
    var reconnectSeconds = 1.0

    @Option(help: "How long the node keeps serving in update mode after accepting a reconnect, in seconds.")
    var reconnectDelay = 0.0

    @Option(help: "How long an install takes when the request names no seconds.")
    var installSeconds = 3.0

    @Option(help: "A PEM certificate: the device and console ports then speak TLS (needs --tls-key).")
    var tlsCert: String?

    @Option(help: "The PEM private key of --tls-cert.")
    var tlsKey: String?

    @Option(
        help: "Seconds the node's clock is off (its status answers' Date header), for the update plan's clock check.")
    var clockOffset = 0.0

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    func validate() throws {
        guard NodeVersion(version) != nil else { throw ValidationError("--version must be like 12.06.100") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        for (name, port) in [("device", devicePort), ("console", consolePort), ("control", controlPort)]
        where !(1...65535).contains(port) {
            throw ValidationError("--\(name)-port must be from 1 to 65535")
        }
        guard (tlsCert == nil) == (tlsKey == nil) else {
            throw ValidationError("--tls-cert and --tls-key go together")
        }
        guard reconnectSeconds >= 0, installSeconds >= 0, reconnectDelay >= 0 else {
            throw ValidationError("seconds must not be negative")
        }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var configuration = SimulatedNode.Configuration(
            id: id, host: host, devicePort: devicePort, consolePort: consolePort, controlPort: controlPort,
            dataDirectory: URL(fileURLWithPath: dataDir), version: NodeVersion(version)!,
            reconnectSeconds: reconnectSeconds, defaultInstallSeconds: installSeconds)
        configuration.reconnectDelaySeconds = reconnectDelay
        configuration.tlsCertificate = tlsCert
        configuration.tlsKey = tlsKey
        configuration.clockOffsetSeconds = clockOffset
        let node = SimulatedNode(configuration: configuration, logger: Logger(label: "ums-node-sim"))
        let stopSignal = StopSignal()
        try await node.start()
        let ports = node.ports
        // Written unbuffered: scripts wait for this line on a pipe.
        let ready =
            "ums-node-sim \(id) listening: device \(host):\(ports.device), console \(host):\(ports.console), "
            + "control \(host):\(ports.control)\n"
        FileHandle.standardOutput.write(Data(ready.utf8))
        let signal = await stopSignal.wait()
        Logger(label: "ums-node-sim").info("stopping", metadata: ["signal": "\(signal)"])
        await node.stop()
    }
}

/// Waits for SIGTERM or SIGINT, delivered through dispatch instead of the default handlers.
final class StopSignal {
    private let sources: [any DispatchSourceSignal]
    private let stream: AsyncStream<Int32>

    init() {
        let (stream, continuation) = AsyncStream.makeStream(of: Int32.self)
        self.stream = stream
        sources = [SIGTERM, SIGINT].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            return source
        }
    }

    /// The first signal received.
    func wait() async -> Int32 {
        for await number in stream { return number }
        return SIGTERM
    }
}
