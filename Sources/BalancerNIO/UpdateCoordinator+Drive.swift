import BalancerCore
import BalancerStore
import Foundation
import Logging

/// The driven update (`ums-balancer update start`): the coordinator feeds its machine the same
/// observations as the run's, records each step, persists the drive before every install call, and
/// holds the run's queued reconnects while the drive is paused.
extension UpdateCoordinator {
    static func driveSettings(_ configuration: BalancerConfiguration) -> UpdateDriveMachine.Settings {
        UpdateDriveMachine.Settings(
            installTimeout: configuration.update.installTimeout,
            installCallTimeout: configuration.install?.timeout ?? .seconds(60),
            canaryConnections: configuration.update.canaryConnections,
            canaryTimeout: configuration.update.canaryTimeout,
            drainTimeout: configuration.update.drainTimeout, drainRate: configuration.update.drainRate)
    }

    static func installs(_ configuration: BalancerConfiguration) -> [NodeID: InstallSettings] {
        var installs: [NodeID: InstallSettings] = [:]
        for node in configuration.nodes { installs[node.id] = configuration.install(for: node.id) }
        return installs
    }

    /// The driven update under way, or the last one; nil when none was started.
    var currentDrive: UpdateDrive? { drive.drive }

    /// What the drive looks at now.
    func driveObservation() -> DriveObservation {
        let nodes = directory.snapshot()
        return DriveObservation(
            nodes: nodes.map(\.status),
            open: Dictionary(uniqueKeysWithValues: nodes.map { ($0.status.id, $0.connections) }),
            served: directory.servedDeviceConnections(), run: machine.run.state)
    }

    // MARK: - Operator requests

    /// Starts a driven update in `plan`'s order; throws why not.
    func startDrive(
        version: String, plan: UpdatePlan, force: Bool, actor: String
    ) async throws(DriveStartRefusal) -> UpdateDrive {
        let withoutInstall = plan.order.filter { installs[$0] == nil }
        let actions = try drive.startRequested(
            version: version, plan: plan, observation: driveObservation(), withoutInstall: withoutInstall,
            force: force, by: actor, now: clock.now())
        await performDrive(actions, actor: actor)
        return drive.drive ?? UpdateDrive(targetVersion: version, order: [], startedAt: clock.now(), startedBy: actor)
    }

    /// `update pause`.
    func pauseDrive(actor: String) async throws(DriveOperatorRefusal) -> UpdateDrive {
        let actions = try drive.pauseRequested(by: actor, now: clock.now())
        await performDrive(actions, actor: actor)
        return drive.drive!
    }

    /// `update resume`: goes on, or retries what stalled.
    func resumeDrive(actor: String) async throws(DriveOperatorRefusal) -> UpdateDrive {
        let actions = try drive.resumeRequested(by: actor, observation: driveObservation(), now: clock.now())
        await performDrive(actions, actor: actor)
        return drive.drive!
    }

    /// `update abort`.
    func abortDrive(actor: String) async throws(DriveOperatorRefusal) -> UpdateDrive {
        let actions = try drive.abortRequested(by: actor, now: clock.now())
        await performDrive(actions, actor: actor)
        return drive.drive!
    }

    /// An operator ended the run by hand: a drive under way ends with it.
    func abortDriveWithRun(actor: String) async {
        guard drive.drive?.state.isActive == true,
            let actions = try? drive.abortRequested(by: "\(actor) (update end)", now: clock.now())
        else { return }
        await performDrive(actions, actor: actor)
    }

    // MARK: - Events

    /// After a restart: the persisted drive goes on where it was (a paused one stays paused).
    func resumeDrive() async {
        guard let current = drive.drive, current.state.isActive else { return }
        logger.notice("driven update resumed from the state database", metadata: ["drive": "\(current.summary)"])
        journal.record(.drive, "resumed after a balancer restart: \(current.summary)")
        await performDrive(drive.resumedAfterRestart(now: clock.now()))
    }

    /// Every node has had its first probe: until then a node not yet probed looks down, and the
    /// drive would wait for it (or say so) for nothing.
    func firstProbeRoundDone() async {
        probed = true
        await observeDrive()
    }

    /// Feeds the drive what the nodes, the served connections and the run show now.
    func observeDrive() async {
        guard probed, drive.drive?.state.isActive == true else { return }
        await performDrive(drive.observed(driveObservation(), now: clock.now()))
    }

    private func installAnswered(_ node: NodeID, _ answer: ReconnectAnswer) async {
        switch answer {
        case .accepted(let detail):
            logger.notice("install accepted", metadata: ["node": "\(node)", "answer": "\(detail)"])
            journal.record(.drive, node: node, "install call accepted: \(detail)")
        case .rejected(let detail):
            logger.warning("install call failed", metadata: ["node": "\(node)", "answer": "\(detail)"])
            journal.record(.drive, node: node, "install call failed: \(detail)")
        }
        await performDrive(drive.installAnswered(node, answer, now: clock.now()))
    }

    // MARK: - Actions

    /// Carries out `actions`, then persists the drive (an answer alone changes it too), and only
    /// then makes the install calls among them.
    func performDrive(_ actions: [DriveAction], actor: String = "balancer") async {
        var calls: [(node: NodeID, version: String, attempt: Int, timeout: Duration)] = []
        var retryReconnect = false
        for action in actions {
            switch action {
            case .stateChanged(let from, let to, let reason):
                let level: Logger.Level = to == .stalled ? .error : .notice
                var metadata: Logger.Metadata = ["reason": "\(reason)", "drive": "\(drive.drive?.summary ?? "")"]
                if let from { metadata["from"] = "\(from.rawValue)" }
                if actor != "balancer" { metadata["by"] = "\(actor)" }
                logger.log(level: level, "driven update \(to.rawValue)", metadata: metadata)
                journal.record(
                    .drive, actor: actor, from.map { "\($0.rawValue) -> \(to.rawValue): \(reason)" } ?? reason)
            case .callInstall(let node, let version, let attempt, let timeout):
                if installPacer?.node == node { installPacer = nil }
                calls.append((node, version, attempt, timeout))
                journal.record(
                    .drive, node: node, actor: actor,
                    "install of \(version) requested" + (attempt > 1 ? " again (attempt \(attempt))" : ""))
            case .drainingForInstall(let node, let connections, let timeout):
                logger.notice(
                    "driven update: draining before the install",
                    metadata: [
                        "node": "\(node)", "connections": "\(connections)",
                        "drain_timeout": "\(DurationText.format(timeout))",
                    ])
                journal.record(
                    .drain, node: node,
                    "drained for its install: \(connections) connections open; the install is called once they"
                        + " close, or after \(DurationText.format(timeout))")
            case .closeForInstall(let node, let connections, let perSecond):
                closeForInstall(node, connections: connections, perSecond: perSecond)
            case .installSkipped(let node, let mode):
                journal.record(.drive, node: node, "already \(mode) on the target version: no install needed")
            case .nodeInstalling(let node):
                journal.record(.drive, node: node, "installing")
            case .nodeBack(let node, let mode, let after, let canary):
                // Lifted from its install drain below: back, it takes new connections gradually.
                if directory.status(of: node)?.installDrain == true { directory.slowStart(node, over: slowStart) }
                let gate = canary > 0 ? "; canary gate: \(canary) device connections through the balancer" : ""
                logger.notice(
                    "driven update: node back", metadata: ["node": "\(node)", "mode": "\(mode)", "after_s": "\(after)"])
                journal.record(.drive, node: node, "back in \(mode) mode after \(Self.seconds(after))\(gate)")
            case .stepDone(let node, let took, let served):
                logger.notice("driven update: step done", metadata: ["node": "\(node)", "took_s": "\(took)"])
                let canary = served > 0 ? " (\(served) device connections served since its return)" : ""
                journal.record(.drive, node: node, "step done in \(Self.seconds(took))\(canary)")
            case .stepStalled(let node, let reason):
                logger.error("driven update step stalled", metadata: ["node": "\(node)", "reason": "\(reason)"])
                journal.record(.drive, node: node, "stalled: \(reason)")
            case .stepWaiting(let node, let reason):
                logger.notice("driven update: next step waits", metadata: ["node": "\(node)", "reason": "\(reason)"])
                journal.record(.drive, node: node, "waits: \(reason)")
            case .reconnectStageStarted:
                journal.record(
                    .drive,
                    "every server installed: the update-mode servers reconnect, reconnect.max_unavailable at a time")
            case .retryReconnect:
                retryReconnect = true
            }
        }
        holdInstallDrain()
        // A paused drive holds the run's queued reconnects; released, the next tick admits them.
        machine.reconnectsHeld = drive.drive?.state == .paused
        directory.countServedConnections(drive.drive?.state.isActive == true)
        let recorded = await persistDrive()
        for call in calls {
            guard recorded else {
                let refusal = "not called: the state database could not record the request first"
                journal.record(.drive, node: call.node, "install \(refusal)")
                await performDrive(drive.installAnswered(call.node, .rejected(refusal), now: clock.now()))
                continue
            }
            callInstall(call.node, version: call.version, attempt: call.attempt, timeout: call.timeout)
        }
        if retryReconnect { _ = await self.retryReconnect(actor: actor) }
    }

    /// Drains the node the drive holds out for its install, and only that one: set when its step
    /// starts (or after a restart), lifted when it is back, when its step stalls, on pause before
    /// its install call, and when the drive ends.
    private func holdInstallDrain() {
        let held = drive.drive?.installDrain
        for (status, connections) in directory.snapshot() where status.installDrain != (status.id == held) {
            let hold = status.id == held
            directory.apply(.installDrainSet(hold), to: status.id)
            if hold {
                logger.notice(
                    "drained for install", metadata: ["node": "\(status.id)", "connections": "\(connections)"])
            } else {
                if installPacer?.node == status.id { installPacer = nil }
                logger.notice("install drain lifted", metadata: ["node": "\(status.id)"])
                journal.record(.release, node: status.id, "released from its install drain: takes new connections")
            }
        }
    }

    /// The drain before `node`'s install timed out: what is still open is closed, paced.
    private func closeForInstall(_ node: NodeID, connections: Int, perSecond: Int) {
        logger.notice(
            "drain timeout: closing the remaining connections before the install",
            metadata: ["node": "\(node)", "connections": "\(connections)", "per_second": "\(perSecond)"])
        installPacer = (node, DrainPacer(perSecond: perSecond, start: clock.now()))
        journal.record(
            .drain, node: node,
            "drain timeout before the install: closing \(connections) connections, \(perSecond) per second")
    }

    /// Writes the drive if it changed (the live canary count aside: it is kept in memory only);
    /// false when the state database did not take it.
    private func persistDrive() async -> Bool {
        guard let store, var current = drive.drive else { return true }
        for index in current.steps.indices { current.steps[index].canaryServed = 0 }
        guard current != savedDrive else { return true }
        do {
            try await store.saveDrive(current)
        } catch {
            return false
        }
        savedDrive = current
        return true
    }

    private func callInstall(_ node: NodeID, version: String, attempt: Int, timeout: Duration) {
        guard let configuration = nodes[node], let install = installs[node] else {
            start { await self.installAnswered(node, .rejected("\(node) has no install action in the configuration")) }
            return
        }
        let callTimeout = min(timeout, install.timeout)
        logger.notice(
            "calling install",
            metadata: [
                "node": "\(node)", "version": "\(version)", "attempt": "\(attempt)",
                "timeout": "\(DurationText.format(callTimeout))",
            ])
        start { [httpClient] in
            let answer = await NodeActionCall.call(
                install.action, node: configuration, version: version, timeout: callTimeout, httpClient: httpClient)
            await self.installAnswered(node, answer)
        }
    }

    /// "42s", "3m 5s".
    static func seconds(_ interval: TimeInterval) -> String {
        let whole = Int(interval.rounded())
        return whole < 120 ? String(format: "%.1fs", interval) : "\(whole / 60)m \(whole % 60)s"
    }
}
