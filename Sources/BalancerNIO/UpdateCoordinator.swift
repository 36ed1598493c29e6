import AsyncHTTPClient
import BalancerCore
import BalancerDataPath
import BalancerStore
import Foundation
import Logging

/// Runs the update-run state machine against the live cluster: feeds it what the probes see,
/// carries out its actions (drain, reconnect calls, release with slow start), persists the run
/// and journals every step.
actor UpdateCoordinator {
    private var machine: UpdateRunMachine
    private var nodes: [NodeID: NodeConfiguration]
    private let directory: NodeDirectory
    private let httpClient: HTTPClient
    private var caller: ReconnectCaller?
    private var slowStart: Duration
    private let store: StateStore?
    private let journal: Journal
    private let logger: Logger
    private var saved: UpdateRun?

    init(
        configuration: BalancerConfiguration,
        initialRun: UpdateRun?,
        directory: NodeDirectory,
        httpClient: HTTPClient,
        store: StateStore?,
        journal: Journal,
        logger: Logger
    ) {
        machine = UpdateRunMachine(run: initialRun ?? UpdateRun(), settings: Self.settings(configuration))
        saved = initialRun
        nodes = Dictionary(uniqueKeysWithValues: configuration.nodes.map { ($0.id, $0) })
        self.directory = directory
        self.httpClient = httpClient
        self.caller = Self.caller(configuration, httpClient: httpClient)
        self.slowStart = configuration.update.slowStart
        self.store = store
        self.journal = journal
        self.logger = logger
        directory.setUpdateRunning(machine.run.isRunning)
    }

    /// The run as it stands.
    var run: UpdateRun { machine.run }

    /// Takes a reloaded configuration: node list, reconnect action and timings. The run carries over.
    func reconfigure(_ configuration: BalancerConfiguration) {
        machine.settings = Self.settings(configuration)
        nodes = Dictionary(uniqueKeysWithValues: configuration.nodes.map { ($0.id, $0) })
        caller = Self.caller(configuration, httpClient: httpClient)
        slowStart = configuration.update.slowStart
    }

    private static func settings(_ configuration: BalancerConfiguration) -> UpdateRunMachine.Settings {
        UpdateRunMachine.Settings(
            drainTimeout: configuration.update.drainTimeout,
            reconnectTimeout: configuration.reconnect?.timeout ?? .seconds(120),
            retries: configuration.reconnect?.retries ?? 5,
            hasReconnectAction: configuration.reconnect != nil)
    }

    private static func caller(_ configuration: BalancerConfiguration, httpClient: HTTPClient) -> ReconnectCaller? {
        configuration.reconnect.map {
            ReconnectCaller(action: $0.action, callTimeout: min($0.timeout, .seconds(10)), httpClient: httpClient)
        }
    }

    /// Picks a persisted run up again: nodes still on their way back are drained again.
    func resume() async {
        guard machine.run.state != .idle else { return }
        logger.notice("update run resumed from the state database", metadata: ["update": "\(machine.run.summary)"])
        journal.record(.run, "resumed after a balancer restart: \(machine.run.summary)")
        await perform(machine.resumed(now: Date()))
    }

    /// A node's observed state changed.
    func nodesChanged() async {
        let statuses = directory.snapshot().map(\.status)
        await perform(machine.nodesObserved(statuses, now: Date()))
    }

    /// Re-arms a stalled run; false when the run is not stalled.
    func retryReconnect(actor: String) async -> Bool {
        guard machine.run.state == .stalled else { return false }
        journal.record(.reconnect, actor: actor, "retry of the stalled reconnect requested")
        await perform(machine.retryRequested(now: Date()))
        return true
    }

    /// Ticks the machine until cancelled: drains that finished, retries that are due, deadlines.
    func run() async throws {
        while true {
            try await Task.sleep(for: .milliseconds(250))
            let now = Date()
            for (node, reconnect) in machine.run.reconnects where reconnect.phase == .draining {
                if directory.connections(to: node) == 0 {
                    journal.record(.drain, node: node, "connections drained; reconnect can be called")
                    await perform(machine.drainFinished(node, now: now))
                }
            }
            await perform(machine.tick(now: now))
        }
    }

    // MARK: - Actions

    private func perform(_ actions: [UpdateAction]) async {
        for action in actions {
            switch action {
            case .stateChanged(let from, let to, let reason):
                let level: Logger.Level = to == .stalled ? .error : .notice
                logger.log(
                    level: level, "update run \(to.rawValue)",
                    metadata: ["from": "\(from.rawValue)", "reason": "\(reason)", "update": "\(machine.run.summary)"])
                journal.record(.run, "\(from.rawValue) -> \(to.rawValue): \(reason)")
            case .targetChanged(let version):
                logger.notice("update target version", metadata: ["version": "\(version)"])
                journal.record(.target, "target version \(version)")
            case .drain(let node):
                directory.update(node) { $0.reconnectDrain = true }
                logger.notice("draining for reconnect", metadata: ["node": "\(node)"])
                journal.record(.drain, node: node, "drained for reconnect: no new connections")
            case .callReconnect(let node, let attempt):
                call(node, attempt: attempt)
            case .release(let node):
                directory.update(node) { $0.reconnectDrain = false }
                directory.slowStart(node, over: slowStart)
                logger.notice("node back in normal mode: slow start", metadata: ["node": "\(node)"])
                journal.record(
                    .release, node: node, "back in normal mode; slow start over \(DurationText.format(slowStart))")
            case .reconnectDueForOperator(let due):
                logger.warning(
                    "reconnect due: no reconnect action configured, reconnect these servers by hand",
                    metadata: ["nodes": "\(due.joined(separator: ", "))"])
                journal.record(.reconnect, "reconnect due for \(due.joined(separator: ", ")) (no action configured)")
            }
        }
        directory.setUpdateRunning(machine.run.isRunning)
        await persist()
    }

    private func call(_ node: NodeID, attempt: Int) {
        guard let caller, let configuration = nodes[node] else { return }
        logger.notice("calling reconnect", metadata: ["node": "\(node)", "attempt": "\(attempt)"])
        journal.record(.reconnect, node: node, "reconnect call, attempt \(attempt)")
        Task {
            let answer = await caller.call(configuration)
            await self.answered(node, answer)
        }
    }

    private func answered(_ node: NodeID, _ answer: ReconnectAnswer) async {
        switch answer {
        case .accepted(let detail):
            logger.notice("reconnect accepted", metadata: ["node": "\(node)", "answer": "\(detail)"])
            journal.record(.reconnect, node: node, "reconnect accepted: \(detail)")
        case .rejected(let detail):
            logger.warning("reconnect failed", metadata: ["node": "\(node)", "answer": "\(detail)"])
            journal.record(.reconnect, node: node, "reconnect failed: \(detail)")
        }
        await perform(machine.reconnectAnswered(node, answer, now: Date()))
    }

    private func persist() async {
        guard let store, machine.run != saved else { return }
        do {
            try await store.saveRun(machine.run)
            saved = machine.run
        } catch {
            logger.error("cannot save the update run", metadata: ["error": "\(error)"])
        }
    }
}
