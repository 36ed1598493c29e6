import ArgumentParser
import BalancerAdmin
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
import UnixSignals

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
        logWarnings(checked.warnings, logger: logger)
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

/// Runs a balancer until SIGTERM or SIGINT (a second one exits at once); SIGHUP reloads `configPath`.
func runBalancer(configuration: BalancerConfiguration, configPath: String, logger: Logger) async throws {
    // Checked first: an admin API on a non-loopback address without a token never starts.
    let adminToken = try configuration.admin.flatMap { settings throws(AdminSetupError) in
        try AdminToken.load(for: settings)
    }
    PrometheusMetrics.bootstrap()
    // The state database is opened before anything listens: a broken one is an error at start.
    let store = try configuration.state.map { try StateStore(path: $0.path) }
    let initialRun = try await store?.loadRun()
    let initialDrive = try await store?.loadDrive()
    let activation = try inheritedSockets(for: configuration)
    let group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.threads ?? System.coreCount)
    let balancer = Balancer(
        configuration: configuration,
        group: group,
        logger: logger,
        accessLogger: Logger(label: "ums-balancer.access"),
        store: store,
        initialRun: initialRun,
        initialDrive: initialDrive,
        socketActivation: activation
    )
    var members: [any Service] = [balancer]
    let adminTokens = AdminTokens(adminToken)
    let systemd = SystemdReporter(notifier: SystemdNotifier(), balancer: balancer, group: group, logger: logger)
    let reload: @Sendable () async -> Void = {
        systemd.reloadStarted()
        await reloadConfiguration(balancer, from: configPath, logger: logger)
        if let settings = configuration.admin { reloadAdminToken(adminTokens, settings, balancer, logger: logger) }
        await systemd.reloadFinished()
    }
    if let settings = configuration.admin {
        let api = AdminAPI(balancer: balancer, store: store, metrics: PrometheusMetrics.registry) {
            logger.notice("admin API: reloading the configuration", metadata: ["path": "\(configPath)"])
            await reload()
        }
        // First in the group, so it stops last: status stays available while connections drain.
        let admin = AdminService(
            api: api, settings: settings, tokens: adminTokens, logger: Logger(label: "ums-balancer.admin"))
        members.insert(admin, at: 0)
    }
    let services = ServiceGroup(
        configuration: .init(services: members, logger: logger)
    )
    // Trapped before anything listens: a SIGHUP right after "listening" would otherwise meet the
    // default action and end the process.
    let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint, .sighup)
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { await systemd.run() }
        tasks.addTask {
            var stops = 0
            for await signal in signals {
                if signal == .sighup {
                    logger.notice("SIGHUP: reloading the configuration", metadata: ["path": "\(configPath)"])
                    await reload()
                    continue
                }
                stops += 1
                if stops == 1 {
                    logger.notice("signal received: shutting down gracefully", metadata: ["signal": "\(signal)"])
                    systemd.stopping()
                    await services.triggerGracefulShutdown()
                } else {
                    logger.warning("second signal: exiting at once", metadata: ["signal": "\(signal)"])
                    exit(0)
                }
            }
        }
        try await services.run()
        tasks.cancelAll()
    }
    try await group.shutdownGracefully()
}

/// Reads, validates and applies `path`; a bad file or a failed bind leaves the running configuration.
/// Reads the admin token file again (admin settings themselves apply at restart): a rotated
/// token is in force from now on; an unreadable file keeps the old one.
func reloadAdminToken(_ tokens: AdminTokens, _ settings: AdminSettings, _ balancer: Balancer, logger: Logger) {
    do {
        if try tokens.reload(for: settings) {
            logger.notice("admin token replaced from its file", metadata: ["path": "\(settings.tokenFile ?? "-")"])
            balancer.journal.record(.reload, "admin token replaced from \(settings.tokenFile ?? "-")")
        }
    } catch {
        logger.error("admin token file: keeping the token in force", metadata: ["error": "\(error)"])
    }
}

func reloadConfiguration(_ balancer: Balancer, from path: String, logger: Logger) async {
    let configuration: BalancerConfiguration
    do {
        let checked = try ConfigFile.check(path: path)
        logWarnings(checked.warnings, logger: logger)
        configuration = checked.configuration
    } catch {
        balancer.reloadRejected(error.description)
        return
    }
    do {
        try await balancer.reload(to: configuration)
    } catch {
        // reload(to:) has recorded and logged why; nothing changed.
    }
}

/// What `check-config` warns about, said in the log when the file is loaded.
func logWarnings(_ warnings: [ConfigError], logger: Logger) {
    for warning in warnings {
        logger.warning(
            "configuration: \(warning.message)", metadata: ["at": "\(warning.file):\(warning.line):\(warning.column)"])
    }
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
