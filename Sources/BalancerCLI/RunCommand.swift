import ArgumentParser
import BalancerAdmin
import BalancerApp
import BalancerConfigFile
import BalancerCore
import BalancerDataPath
import BalancerNIO
import BalancerStore
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `ums-balancer run`: the daemon in the foreground.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the balancer in the foreground."
    )

    @OptionGroup var options: ConfigOption

    @Option(name: .long, help: "Lowest log level printed: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Option(name: .long, help: "Write the process ID here (for `ums-balancer reload --pid-file`).")
    var pidFile: String?

    func run() async throws {
        let checked: ConfigFile.Checked
        do {
            checked = try options.check()
        } catch {
            printError(error.description)
            throw ExitCode(1)
        }
        let configuration = checked.configuration
        bootstrapLogging(level: logLevel)
        let logger = Logger(label: "ums-balancer")
        BalancerApp.log(checked.warnings, logger: logger)
        raiseOpenFileLimit(logger: logger)
        if let pidFile {
            do {
                try "\(getpid())\n".write(toFile: pidFile, atomically: true, encoding: .utf8)
            } catch {
                logger.critical("cannot write the pid file", metadata: ["path": "\(pidFile)", "error": "\(error)"])
                throw ExitCode(1)
            }
        }
        defer { if let pidFile { try? FileManager.default.removeItem(atPath: pidFile) } }
        do {
            try await runBalancer(configuration: configuration, configPath: options.config, logger: logger)
        } catch {
            logger.critical("cannot run", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// Runs a balancer until SIGTERM or SIGINT (a second one ends the wait for connections); SIGHUP
/// and the admin API reload `configPath`.
func runBalancer(configuration: BalancerConfiguration, configPath: String, logger: Logger) async throws {
    PrometheusMetrics.bootstrap()
    // The state database is opened before anything listens: a broken one is an error at start.
    let store = try configuration.state.map { try StateStore(path: $0.path) }
    var options = BalancerApp.Options(logger: logger)
    options.accessLogger = Logger(label: "ums-balancer.access")
    options.store = store
    options.initialRun = try await store?.loadRun()
    options.initialDrive = try await store?.loadDrive()
    options.socketActivation = try inheritedSockets(for: configuration)
    options.metrics = PrometheusMetrics.registry
    options.reload = ReloadService.fromFile(configPath, logger: logger)
    options.handlesSignals = true
    options.notifiesSystemd = true
    let app = try await BalancerApp.build(configuration: configuration, options: options)
    try await app.run()
}

/// One line per event on standard error, metadata as key=value.
func bootstrapLogging(level: Logger.Level) {
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = level
        return handler
    }
}

/// Each proxied connection holds two descriptors: the soft limit is raised to the hard one.
func raiseOpenFileLimit(logger: Logger) {
    var limit = rlimit()
    #if canImport(Glibc)
    let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
    let resource = RLIMIT_NOFILE
    #endif
    guard getrlimit(resource, &limit) == 0 else { return }
    if limit.rlim_cur < limit.rlim_max {
        var raised = limit
        raised.rlim_cur = limit.rlim_max
        if setrlimit(resource, &raised) != 0 {
            logger.warning(
                "cannot raise the open file limit to the hard limit",
                metadata: ["hard": "\(limit.rlim_max)", "error": "\(String(cString: strerror(errno)))"])
        }
        // Report what is in force, not what was asked for.
        _ = getrlimit(resource, &limit)
    }
    logger.info(
        "open file limit",
        metadata: [
            "limit": "\(limit.rlim_cur)",
            "max_connections":
                "\(DescriptorBudget.capacity(forLimit: Int(limit.rlim_cur)) / DescriptorBudget.perConnection)",
        ])
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// The listening sockets systemd passed (a `.socket` unit), each named after the listener it is
/// for. The variables are removed so that nothing the balancer starts takes them for its own.
func inheritedSockets(for configuration: BalancerConfiguration) throws -> SocketActivation? {
    let activation = try SocketActivation(environment: ProcessInfo.processInfo.environment, processID: getpid())
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] { unsetenv(name) }
    guard let activation else { return nil }
    for socket in activation.sockets { _ = fcntl(socket.descriptor, F_SETFD, FD_CLOEXEC) }
    let unmatched = activation.unmatched(by: configuration.listeners.map(\.name))
    guard unmatched.isEmpty else {
        throw SocketActivationError.malformed(
            "systemd passed sockets named \(unmatched.joined(separator: ", ")), but no listener has that name"
                + " (listeners: \(configuration.listeners.map(\.name).joined(separator: ", ")))")
    }
    return activation
}
