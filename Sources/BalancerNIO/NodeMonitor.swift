import BalancerCore
import Logging

/// Probes every node on its interval and folds the outcomes, damped by rise/fall, into the node
/// directory. Each node is probed by its own task, so a node that hangs its probe delays nobody else.
final class NodeMonitor: Sendable {
    private let nodes: [NodeConfiguration]
    private let interval: Duration
    private let probe: NodeProbe
    private let rise: Int
    private let fall: Int
    private let directory: NodeDirectory
    private let logger: Logger

    init(nodes: [NodeConfiguration], health: HealthSettings, probe: NodeProbe, directory: NodeDirectory, logger: Logger) {
        self.nodes = nodes
        self.interval = health.interval
        self.rise = health.rise
        self.fall = health.fall
        self.probe = probe
        self.directory = directory
        self.logger = logger
    }

    private var readsMode: Bool {
        if case .tcpConnect = probe.kind { return false }
        return true
    }

    /// Probes every node once, together, then keeps probing each on its interval until cancelled.
    /// `firstRoundDone` runs once every node has had its first answer.
    func run(firstRoundDone: @Sendable () async throws -> Void) async throws {
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
        let clock = ContinuousClock()
        var next = clock.now + interval
        while true {
            try await Task.sleep(until: next, clock: clock)
            next = max(next + interval, clock.now)
            record(await probe.probe(node), for: node.id, observer: &observer)
        }
    }

    private func record(_ outcome: ProbeOutcome, for id: NodeID, observer: inout NodeObserver) {
        var observed = observer
        guard let before = directory.update(id, { status in observed.record(outcome, into: &status) }) else {
            observer = observed
            return
        }
        observer = observed
        guard let after = directory.status(of: id) else { return }
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
    }
}
