import AsyncHTTPClient
import BalancerCore
import BalancerDataPath
import BalancerStore
import Foundation
import Logging

/// Runs the update-run state machine against the live cluster: feeds it what the probes see and
/// the time, carries out its actions (drain, reconnect calls, release with slow start, flags),
/// persists the run and journals every step. It also drives an update when an operator starts one
/// (`UpdateCoordinator+Drive.swift`): one coordinator, so the drive and the run see the same
/// observations in the same order.
actor UpdateCoordinator {
    /// How often time is passed to the machine: drains that finished, due retries, deadlines.
    static let tickInterval: Duration = .milliseconds(250)

    var machine: UpdateRunMachine
    /// The driven update, if an operator started one (`update start`).
    var drive: UpdateDriveMachine
    var nodes: [NodeID: NodeConfiguration]
    /// Each node's install action (its own or the top-level one).
    var installs: [NodeID: InstallSettings]
    let directory: NodeDirectory
    let httpClient: HTTPClient
    private var caller: ReconnectCaller?
    private(set) var slowStart: Duration
    let store: StateStore?
    let journal: Journal
    let logger: Logger
    let clock: any BalancerClock
    private var saved: UpdateRun?
    /// The drive as last written to the state database.
    var savedDrive: UpdateDrive?
    /// Every node has had its first probe since the start (the drive waits for it).
    var probed = false
    /// Closes at most that many of a node's connections; returns how many it closed.
    let closeConnections: @Sendable (NodeID, Int) -> Int
    /// Calls to nodes (reconnect, install), run by `run()` in tasks of their own, so a call in
    /// flight never holds up a tick or a deadline.
    private let calls = AsyncStream<@Sendable () async -> Void>.makeStream()
    /// Paced drains under way (`update.drain_rate`), by node.
    private var pacers: [NodeID: DrainPacer] = [:]
    /// The paced closing of a node drained for its install, once its drain timed out.
    var installPacer: (node: NodeID, pacer: DrainPacer)?

    init(
        configuration: BalancerConfiguration,
        initialRun: UpdateRun?,
        initialDrive: UpdateDrive? = nil,
        directory: NodeDirectory,
        httpClient: HTTPClient,
        store: StateStore?,
        journal: Journal,
        logger: Logger,
        clock: any BalancerClock = SystemClock(),
        closeConnections: @escaping @Sendable (NodeID, Int) -> Int = { _, _ in 0 }
    ) {
        self.closeConnections = closeConnections
        machine = UpdateRunMachine(run: initialRun ?? UpdateRun(), settings: Self.settings(configuration))
        saved = initialRun
        drive = UpdateDriveMachine(drive: initialDrive, settings: Self.driveSettings(configuration))
        machine.reconnectsHeld = initialDrive?.state == .paused
        directory.countServedConnections(initialDrive?.state.isActive == true)
        savedDrive = initialDrive
        nodes = Dictionary(uniqueKeysWithValues: configuration.nodes.map { ($0.id, $0) })
        installs = Self.installs(configuration)
        self.directory = directory
        self.httpClient = httpClient
        self.caller = Self.caller(configuration, httpClient: httpClient)
        self.slowStart = configuration.update.slowStart
        self.store = store
        self.journal = journal
        self.logger = logger
        self.clock = clock
        directory.setUpdate(machine.run.progress)
    }

    /// The run as it stands.
    var run: UpdateRun { machine.run }

    /// Takes a reloaded configuration: node list, reconnect action, timings and deadlines. The run carries over.
    func reconfigure(_ configuration: BalancerConfiguration) {
        machine.settings = Self.settings(configuration)
        drive.settings = Self.driveSettings(configuration)
        nodes = Dictionary(uniqueKeysWithValues: configuration.nodes.map { ($0.id, $0) })
        installs = Self.installs(configuration)
        caller = Self.caller(configuration, httpClient: httpClient)
        slowStart = configuration.update.slowStart
    }

    private static func settings(_ configuration: BalancerConfiguration) -> UpdateRunMachine.Settings {
        UpdateRunMachine.Settings(
            drainTimeout: configuration.update.drainTimeout,
            reconnectTimeout: configuration.reconnect?.timeout ?? .seconds(120),
            retries: configuration.reconnect?.retries ?? 5,
            hasReconnectAction: configuration.reconnect != nil,
            installTimeout: configuration.update.installTimeout,
            maxDuration: configuration.update.maxDuration,
            maxUnavailable: configuration.reconnect?.maxUnavailable ?? 1,
            drainRate: configuration.update.drainRate)
    }

    private static func caller(_ configuration: BalancerConfiguration, httpClient: HTTPClient) -> ReconnectCaller? {
        configuration.reconnect.map { ReconnectCaller(action: $0.action, httpClient: httpClient) }
    }

    /// Picks a persisted run up again: nodes still on their way back are drained again, and what
    /// is overdue is derived (and said) again; a driven update goes on (or stays paused).
    func resume() async {
        if machine.run.state != .idle {
            logger.notice(
                "update run resumed from the state database", metadata: ["update": "\(machine.run.summary)"])
            journal.record(.run, "resumed after a balancer restart: \(machine.run.summary)")
            await perform(machine.resumed(now: clock.now()))
        }
        await resumeDrive()
    }

    /// A node's observed state changed.
    func nodesChanged() async {
        let statuses = directory.snapshot().map(\.status)
        await perform(machine.nodesObserved(statuses, now: clock.now()))
        await observeDrive()
    }

    /// Re-arms a stalled run; false when the run is not stalled.
    func retryReconnect(actor: String) async -> Bool {
        guard machine.run.state == .stalled else { return false }
        journal.record(.reconnect, actor: actor, "retry of the stalled reconnect requested")
        await perform(machine.retryRequested(now: clock.now()))
        return true
    }

    /// Closes the run by hand; throws why not while a node is installing or reconnecting.
    func endRun(actor: String) async throws(UpdateRunMachine.EndRefusal) {
        let statuses = directory.snapshot().map(\.status)
        let actions: [UpdateAction]
        do {
            actions = try machine.endRequested(by: actor, nodes: statuses, now: clock.now())
        } catch {
            logger.notice(
                "update run end refused", metadata: ["by": "\(actor)", "reason": "\(error.description)"])
            throw error
        }
        await perform(actions, actor: actor)
        await abortDriveWithRun(actor: actor)
    }

    /// Ticks the machine until cancelled: drains that finished, retries that are due, deadlines
    /// (also while reconnect calls are in flight: calls run in tasks of their own).
    func run() async throws {
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await self.tick() }
            group.addTask {
                for await node in self.directory.drained { await self.drained(node) }
            }
            for await call in calls.stream { group.addTask { await call() } }
        }
    }

    private func tick() async throws {
        while true {
            try await clock.sleep(for: Self.tickInterval)
            let now = clock.now()
            for (node, reconnect) in machine.run.reconnects where reconnect.phase == .closing {
                guard var pacer = pacers[node] else { continue }
                let allowed = pacer.allowance(at: now)
                pacers[node] = pacer
                if allowed > 0 { _ = closeConnections(node, allowed) }
            }
            if var paced = installPacer {
                let allowed = paced.pacer.allowance(at: now)
                installPacer = paced
                if allowed > 0 { _ = closeConnections(paced.node, allowed) }
            }
            await perform(machine.tick(now: now))
            await observeDrive()
        }
    }

    /// `node`'s last connection closed while it was drained: told by the directory when it happens.
    private func drained(_ node: NodeID) async {
        if drive.drive?.installDrain == node { await observeDrive() }
        guard let reconnect = machine.run.reconnects[node], [.draining, .closing].contains(reconnect.phase),
            directory.connections(to: node) == 0
        else { return }
        pacers[node] = nil
        journal.record(.drain, node: node, "connections drained; reconnect can be called")
        await perform(machine.drainFinished(node, now: clock.now()))
    }

    /// Runs `call` in a task of its own, under `run()`.
    func start(_ call: @escaping @Sendable () async -> Void) {
        calls.continuation.yield(call)
    }

    // MARK: - Actions

    func perform(_ actions: [UpdateAction], actor: String = "balancer") async {
        for action in actions {
            switch action {
            case .stateChanged(let from, let to, let reason):
                let level: Logger.Level = to == .stalled ? .error : .notice
                var metadata: Logger.Metadata = [
                    "from": "\(from.rawValue)", "reason": "\(reason)", "update": "\(machine.run.summary)",
                ]
                if to == .idle || to == .completed, let ending = machine.run.lastRun {
                    metadata["outcome"] = "\(ending.outcome.rawValue)"
                }
                if actor != "balancer" { metadata["by"] = "\(actor)" }
                logger.log(level: level, "update run \(to.rawValue)", metadata: metadata)
                journal.record(.run, actor: actor, "\(from.rawValue) -> \(to.rawValue): \(reason)")
            case .targetChanged(let version):
                logger.notice("update target version", metadata: ["version": "\(version)"])
                journal.record(.target, "target version \(version)")
            case .drain(let node):
                // The directory tells when the last connection closes; a node already drained (a
                // retried reconnect) with nothing open is told here, once these actions are done.
                if directory.apply(.reconnectDrainSet(true), to: node) == nil, directory.connections(to: node) == 0 {
                    start { await self.drained(node) }
                }
                logger.notice("draining for reconnect", metadata: ["node": "\(node)"])
                journal.record(.drain, node: node, "drained for reconnect: no new connections")
            case .closeConnections(let node, let perSecond):
                let left = directory.connections(to: node)
                pacers[node] = DrainPacer(perSecond: perSecond, start: clock.now())
                logger.notice(
                    "drain timeout: closing the remaining connections",
                    metadata: ["node": "\(node)", "connections": "\(left)", "per_second": "\(perSecond)"])
                journal.record(
                    .drain, node: node, "drain timeout: closing \(left) connections, \(perSecond) per second")
            case .callReconnect(let node, let attempt, let timeout):
                call(node, attempt: attempt, timeout: timeout)
            case .release(let node):
                let slow = "slow start over \(DurationText.format(slowStart))"
                if directory.apply(.reconnectDrainSet(false), to: node) != nil {
                    directory.slowStart(node, over: slowStart)
                    logger.notice("reconnect drain released: slow start", metadata: ["node": "\(node)"])
                    journal.record(.release, node: node, "released from its reconnect drain; \(slow)")
                } else if directory.status(of: node)?.mode == .normal {
                    // Without a reconnect action the run never drained it: back by hand, from no
                    // connections at all, it takes new ones gradually all the same.
                    directory.slowStart(node, over: slowStart)
                    logger.notice("back from its reconnect: slow start", metadata: ["node": "\(node)"])
                    journal.record(
                        .release, node: node, "back from its reconnect (not drained by the balancer); \(slow)")
                }
            case .reconnectDueForOperator(let due):
                logger.warning(
                    "reconnect due: no reconnect action configured, reconnect these servers by hand",
                    metadata: ["nodes": "\(due.joined(separator: ", "))"])
                journal.record(.reconnect, "reconnect due for \(due.joined(separator: ", ")) (no action configured)")
            case .flagRaised(let flag, let reason):
                logger.error("update run flagged", metadata: ["flag": "\(flag)", "reason": "\(reason)"])
                journal.record(.flag, node: flag.node, "flagged \(flag): \(reason)")
            case .flagCleared(let flag, let reason):
                logger.notice("update run flag cleared", metadata: ["flag": "\(flag)", "reason": "\(reason)"])
                journal.record(.flag, node: flag.node, "cleared \(flag): \(reason)")
            }
        }
        directory.setUpdate(machine.run.progress)
        await persist()
    }

    private func call(_ node: NodeID, attempt: Int, timeout: Duration) {
        guard let caller, let configuration = nodes[node] else { return }
        logger.notice(
            "calling reconnect",
            metadata: ["node": "\(node)", "attempt": "\(attempt)", "timeout": "\(DurationText.format(timeout))"])
        journal.record(.reconnect, node: node, "reconnect call, attempt \(attempt)")
        start {
            let answer = await caller.call(configuration, timeout: timeout)
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
        await perform(machine.reconnectAnswered(node, answer, now: clock.now()))
    }

    private func persist() async {
        guard let store, machine.run != saved else { return }
        // A failure is logged by the store (paced) and retried at the next tick.
        guard (try? await store.saveRun(machine.run)) != nil else { return }
        saved = machine.run
    }
}

extension UpdateFlag {
    /// The node a flag is about, for the journal.
    var node: NodeID? {
        if case .installOverdue(let node) = self { return node }
        return nil
    }
}
