import BalancerAdmin
import BalancerConfigFile
import BalancerCore
import BalancerNIO
import BalancerStore
import Logging
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import UnixSignals

/// The running balancer, composed in one place from a configuration: the data path, probes,
/// update coordinator, journal, reloads, the admin API and systemd's notifications, each a
/// `Service` in one `ServiceGroup`. `ums-balancer run`, the demo and the test kit all build it here.
public struct BalancerApp: Sendable {
    /// What differs between the daemon, the demo and tests.
    public struct Options: Sendable {
        /// The balancer's log.
        public var logger: Logger
        /// The access log (one line per connection); the balancer's log when nil.
        public var accessLogger: Logger?
        /// Keeps the update run and the journal.
        public var store: StateStore?
        /// The run persisted in `store`, shown from the first answer on.
        public var initialRun: UpdateRun?
        /// The driven update persisted in `store`, continued (or left paused) where it was.
        public var initialDrive: UpdateDrive?
        /// Which executor carries the listeners that terminate nothing.
        public var dataPath: DataPath = .automatic
        /// Listening sockets systemd passed.
        public var socketActivation: SocketActivation?
        /// Where swift-metrics reports to, served on `/metrics` with the status gauges.
        public var metrics: PrometheusCollectorRegistry?
        /// How a reload reads the new configuration; nil re-applies the one in force.
        public var reload: ReloadService.Reload?
        /// Trap SIGHUP (reload), SIGTERM and SIGINT (graceful shutdown; a second one: at once).
        public var handlesSignals = false
        /// Tell systemd how the balancer stands (`NOTIFY_SOCKET`).
        public var notifiesSystemd = false
        /// The event loops to run on; nil: the app makes `threads` of them and stops them after.
        public var eventLoopGroup: (any EventLoopGroup)?
        /// The control plane's time (probe intervals, update-run deadlines); tests pass a manual one.
        public var clock: any BalancerClock = SystemClock()
        /// Told the admin API's address once it listens.
        public var adminListening: @Sendable (SocketAddress) async -> Void = { _ in }

        public init(logger: Logger) {
            self.logger = logger
        }
    }

    /// The balancer: its node directory, connections, update run and reload state.
    public let balancer: Balancer
    /// Reloads, one at a time, for SIGHUP and the admin API alike.
    public let reloads: ReloadService
    private let services: ServiceGroup
    private let ownedGroup: MultiThreadedEventLoopGroup?

    /// Composes the balancer for `configuration`. Fails before anything runs when the admin token
    /// cannot be loaded (an admin API on a non-loopback address without one never starts) or
    /// signals cannot be trapped.
    public static func build(configuration: BalancerConfiguration, options: Options) async throws -> BalancerApp {
        let adminToken = try configuration.admin.flatMap { settings throws(AdminSetupError) in
            try AdminToken.load(for: settings)
        }
        let logger = options.logger
        let ownedGroup =
            options.eventLoopGroup == nil
            ? MultiThreadedEventLoopGroup(numberOfThreads: configuration.threads ?? System.coreCount) : nil
        let group = options.eventLoopGroup ?? ownedGroup!
        let balancer = Balancer(
            configuration: configuration, group: group, logger: logger, accessLogger: options.accessLogger,
            store: options.store, initialRun: options.initialRun, initialDrive: options.initialDrive,
            dataPath: options.dataPath,
            socketActivation: options.socketActivation, clock: options.clock)

        // Trapped before anything listens: a SIGHUP right after "listening" would otherwise meet the
        // default action and end the process.
        let hangups = options.handlesSignals ? await UnixSignalsSequence(trapping: .sighup) : nil
        let stops = options.handlesSignals ? await UnixSignalsSequence(trapping: .sigterm, .sigint) : nil

        // Only under systemd (`NOTIFY_SOCKET` set): a service of the group runs until shutdown.
        let notifier = SystemdNotifier()
        let systemd =
            options.notifiesSystemd && notifier.socketPath != nil
            ? SystemdReporter(notifier: notifier, balancer: balancer, group: group, logger: logger) : nil
        let adminTokens = AdminTokens(adminToken)
        var hooks = ReloadHooks()
        if let systemd { hooks.started = { systemd.reloadStarted() } }
        hooks.finished = { _ in
            if let settings = configuration.admin { adminTokens.reload(for: settings, balancer, logger: logger) }
            await systemd?.reloadFinished()
        }
        let reloads = ReloadService(
            balancer: balancer, load: options.reload ?? Self.reapply, around: hooks, hangups: hangups, logger: logger)

        let groupReference = ServiceGroupReference()
        var members: [any Service] = []
        if let stops {
            members.append(
                StopSignals(
                    signals: stops, group: groupReference, stopping: { systemd?.stopping() }, logger: logger))
        }
        if let settings = configuration.admin {
            let api = AdminAPI(balancer: balancer, store: options.store, metrics: options.metrics) { actor in
                await reloads.reload(actor: actor)
            }
            // Before the balancer's services, so it stops after them: status stays available while
            // connections drain.
            members.append(
                AdminService(
                    api: api, settings: settings, tokens: adminTokens, logger: Logger(label: "ums-balancer.admin"),
                    onListening: options.adminListening))
        }
        if let systemd { members.append(systemd) }
        members.append(reloads)
        members += balancer.services
        let services = ServiceGroup(
            configuration: .init(
                services: members.map { .init(service: $0) },
                logger: Logger(label: "ums-balancer.services", factory: { _ in SwiftLogNoOpLogHandler() })))
        groupReference.set(services)
        return BalancerApp(balancer: balancer, reloads: reloads, services: services, ownedGroup: ownedGroup)
    }

    /// Runs until graceful shutdown (a signal, or `shutDown()`) has finished, then stops the event
    /// loops it made. A second stop signal is not an error: the process exits 0 either way.
    public func run() async throws {
        var failure: (any Error)?
        do {
            try await services.run()
        } catch is StopSignals.SecondSignal {
            // Every service was cancelled: connections closed at once.
        } catch {
            failure = error
        }
        await balancer.shutDownClients()
        try await ownedGroup?.shutdownGracefully()
        if let failure { throw failure }
    }

    /// Starts the graceful shutdown `run()` returns from.
    public func shutDown() async {
        await services.triggerGracefulShutdown()
    }

    /// Re-applies the configuration in force (a reload that reads no file).
    private static let reapply: ReloadService.Reload = { balancer in
        do {
            try await balancer.reload(to: balancer.configuration)
            return .applied(generation: balancer.reloadStatus.generation)
        } catch {
            return .rejected("\(error)")
        }
    }

    /// Logs what `check-config` warns about, when the file is loaded.
    public static func log(_ warnings: [ConfigError], logger: Logger) {
        for warning in warnings {
            logger.warning(
                "configuration: \(warning.message)",
                metadata: ["at": "\(warning.file):\(warning.line):\(warning.column)"])
        }
    }
}

extension AdminTokens {
    /// Reads the admin token file again (admin settings themselves apply at restart): a rotated
    /// token is in force from now on; an unreadable file keeps the old one.
    func reload(for settings: AdminSettings, _ balancer: Balancer, logger: Logger) {
        do {
            if try reload(for: settings) {
                logger.notice("admin token replaced from its file", metadata: ["path": "\(settings.tokenFile ?? "-")"])
                balancer.journal.record(.reload, "admin token replaced from \(settings.tokenFile ?? "-")")
            }
        } catch {
            logger.error("admin token file: keeping the token in force", metadata: ["error": "\(error)"])
        }
    }
}
