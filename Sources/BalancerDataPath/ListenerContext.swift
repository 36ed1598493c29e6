import BalancerCore
import BalancerStore
import Logging
import NIOCore

/// What every connection of one listener shares, whichever executor runs it. A reload replaces it
/// as a whole; each connection keeps the one it was accepted under. A class: a connection holds it
/// with one reference count, not one per field it is made of.
public final class ListenerContext: Sendable {
    public let configuration: ListenerConfiguration
    public let directory: NodeDirectory
    /// What the connection machine of each connection follows.
    public let settings: ConnectionSettings
    /// The access logger, with the listener's name set once.
    public let accessLogger: Logger
    public let journal: Journal
    public let metrics: ListenerMetrics
    /// The limits checked as each connection is accepted.
    public let admission: ListenerAdmission

    /// The context of `configuration`'s connections, whose machines follow `settings`.
    public init(
        configuration: ListenerConfiguration,
        directory: NodeDirectory,
        settings: ConnectionSettings,
        accessLogger: Logger,
        journal: Journal,
        metrics: ListenerMetrics,
        admission: ListenerAdmission = .unlimited()
    ) {
        self.configuration = configuration
        self.directory = directory
        self.settings = settings
        self.admission = admission
        var logger = accessLogger
        logger[metadataKey: "listener"] = "\(configuration.name)"
        self.accessLogger = logger
        self.journal = journal
        self.metrics = metrics
    }

    /// The context of `configuration`'s connections under `timeouts` and `limits`.
    public convenience init(
        configuration: ListenerConfiguration,
        directory: NodeDirectory,
        timeouts: TimeoutSettings,
        limits: LimitSettings = LimitSettings(),
        accessLogger: Logger,
        journal: Journal,
        metrics: ListenerMetrics,
        admission: ListenerAdmission = .unlimited()
    ) {
        self.init(
            configuration: configuration, directory: directory,
            settings: ConnectionSettings(for: configuration, timeouts: timeouts, limits: limits),
            accessLogger: accessLogger, journal: journal, metrics: metrics, admission: admission)
    }

    /// Routes a connection of `trafficClass` from `client` and feeds the answer to `machine`.
    public func route(
        _ machine: inout ConnectionMachine<NodeTarget>,
        _ trafficClass: TrafficClass,
        clientAddress: () -> String?,
        now: MonotonicInstant
    ) -> ConnectionAction<NodeTarget> {
        let algorithm = configuration.algorithm(for: trafficClass)
        // Only affinity needs the client's address as text; the other algorithms skip the conversion.
        let clientKey = algorithm == .source ? machine.proxiedClient?.ipText ?? clientAddress() ?? "unknown" : ""
        switch directory.route(
            trafficClass, algorithm: algorithm, clientKey: clientKey, port: configuration.backendPort)
        {
        case .refused(let refusal): return machine.refused(refusal)
        case .targets(let targets): return machine.routed(targets, now: now)
        case .queue: return machine.queued(now: now)
        }
    }

    /// A node's connection verdicts for passive health: how it failed, or that it answered.
    public func nodeFailed(_ failure: NodeFailure) {
        directory.nodeFailed(failure.node, failure.kind)
    }
}

extension ConnectionSettings {
    /// The settings of `listener`'s connections under `timeouts`.
    public init(for listener: ListenerConfiguration, timeouts: TimeoutSettings, limits: LimitSettings = LimitSettings())
    {
        let classification: Classification =
            switch listener.classification {
            case .fixed(let trafficClass): .fixed(trafficClass)
            case .bySNI(let rules): .clientHello(rules)
            case .byPath: .external
            }
        self.init(
            classification: classification, connectTimeout: timeouts.connect, idleTimeout: timeouts.idle,
            handshakeTimeout: listener.handshakeTimeout, queueTimeout: limits.queueTimeout)
        proxyProtocolFrom = listener.proxyProtocolFrom
        sendProxy = listener.sendProxy
    }
}

extension ListenerConfiguration {
    /// The class a connection has before anything is known about it.
    public var initialClass: TrafficClass {
        switch classification {
        case .fixed(let trafficClass): trafficClass
        case .bySNI(let rules): rules.defaultClass
        case .byPath(let settings): settings.rules.defaultClass
        }
    }
}

extension ListenerClassification {
    /// The `class` value as written in the configuration.
    public var name: String {
        switch self {
        case .fixed(let trafficClass): trafficClass.rawValue
        case .bySNI: "by-sni"
        case .byPath: "by-path"
        }
    }
}

/// How often an executor looks at its connections' timers: a quarter of the shortest timeout, at
/// least 10 ms and at most 1 s, so a timeout fires at most that late.
public func sweepInterval(for timeout: Duration) -> Duration {
    // Runs for every accepted connection: the quarter is taken from the components, as
    // `Duration / Int` is generic over BinaryInteger and costs a 128-bit division each time.
    guard timeout < .seconds(4) else { return .seconds(1) }
    let (seconds, attoseconds) = timeout.components
    let quarter = Duration.nanoseconds(seconds * 250_000_000 + attoseconds / 4_000_000_000)
    return max(quarter, .milliseconds(10))
}
