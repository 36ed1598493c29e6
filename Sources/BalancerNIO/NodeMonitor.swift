import BalancerCore
import BalancerDataPath
import BalancerStore
import Logging
import Metrics

/// Probes every node on its interval and folds the outcomes, damped by rise/fall, into the node
/// directory. Each node is probed by its own task, so a node that hangs its probe delays nobody else.
final class NodeMonitor: Sendable {
    private let nodes: [NodeConfiguration]
    private let interval: Duration
    private let probe: NodeProbe
    private let rise: Int
    private let fall: Int
    private let directory: NodeDirectory
    private let journal: Journal
    private let logger: Logger
    private let onChange: @Sendable () async -> Void
    private let resolver: NodeNameResolver
    private let clock: any BalancerClock

    init(
        nodes: [NodeConfiguration],
        health: HealthSettings,
        probe: NodeProbe,
        directory: NodeDirectory,
        journal: Journal,
        clock: any BalancerClock,
        logger: Logger,
        onChange: @escaping @Sendable () async -> Void
    ) {
        self.clock = clock
        self.journal = journal
        self.onChange = onChange
        self.nodes = nodes
        self.interval = health.interval
        self.rise = health.rise
        self.fall = health.fall
        self.probe = probe
        self.directory = directory
        self.logger = logger
        self.resolver = NodeNameResolver(directory: directory, logger: logger)
    }

    private var readsMode: Bool {
        if case .tcpConnect = probe.kind { return false }
        return true
    }

    /// Probes every node once, together, then keeps probing each on its interval until cancelled.
    /// `firstRoundDone` runs once every node has had its first answer.
    func run(firstRoundDone: @Sendable () async throws -> Void) async throws {
        // Names resolve before the listeners open, so no connection meets a node without an address.
        await resolver.resolveAll()
        var observers: [NodeID: NodeObserver] = [:]
        await withTaskGroup(of: (NodeID, ProbeOutcome).self) { group in
            for node in nodes {
                group.addTask { (node.id, await self.probe.probe(node)) }
            }
            for await (id, outcome) in group {
                var observer = NodeObserver(rise: rise, fall: fall, readsMode: readsMode)
                record(outcome, for: id, observer: &observer)
                observers[id] = observer
            }
        }
        await onChange()
        try await firstRoundDone()
        try await withThrowingDiscardingTaskGroup { group in
            for node in nodes {
                let observer = observers[node.id]!
                group.addTask { try await self.probeForever(node, observer: observer) }
            }
        }
    }

    private func probeForever(_ node: NodeConfiguration, observer: NodeObserver) async throws {
        var observer = observer
        var next = clock.now().addingTimeInterval(interval.seconds)
        let latency = Metrics.Timer(label: "ums_balancer_probe_duration_seconds", dimensions: [("node", node.id)])
        while true {
            try await clock.sleep(until: next)
            next = max(next.addingTimeInterval(interval.seconds), clock.now())
            if NodeHost.isName(node.host) { await resolver.resolve(node.id, name: node.host) }
            // How long the probe took is measured, not scheduled: the monotonic clock.
            let started = ContinuousClock.now
            let outcome = await probe.probe(node)
            latency.recordNanoseconds(Int64((ContinuousClock.now - started) / .nanoseconds(1)))
            if record(outcome, for: node.id, observer: &observer) {
                await onChange()
            }
        }
    }

    /// Applies one outcome; true when the node's state changed.
    @discardableResult
    private func record(_ outcome: ProbeOutcome, for id: NodeID, observer: inout NodeObserver) -> Bool {
        var observed = observer
        guard let before = directory.observe(id, { observed.record(outcome, into: &$0) }) else {
            observer = observed
            return false
        }
        observer = observed
        guard let after = directory.status(of: id) else { return true }
        var metadata: Logger.Metadata = ["node": "\(id)"]
        if case .failed(let reason) = outcome { metadata["probe"] = "\(reason)" }
        if observer.tracker.isFlapping { metadata["flapping"] = "true" }
        if before.health != after.health {
            metadata["health"] = "\(before.health) -> \(after.health)"
        }
        if before.mode != after.mode {
            metadata["mode"] = "\(before.mode) -> \(after.mode)"
        }
        if before.version != after.version {
            metadata["version"] = "\(before.version ?? "-") -> \(after.version ?? "-")"
        }
        let level: Logger.Level = after.health == .down ? .warning : .notice
        logger.log(level: level, "node changed", metadata: metadata)
        let probeDetail = metadata["probe"].map { " (\($0))" } ?? ""
        if before.health != after.health {
            journal.record(.health, node: id, actor: "probe", "\(before.health) -> \(after.health)\(probeDetail)")
        }
        if before.mode != after.mode || before.version != after.version {
            journal.record(
                .mode, node: id, actor: "probe",
                "\(before.mode) \(before.version ?? "-") -> \(after.mode) \(after.version ?? "-")")
        }
        return true
    }
}
