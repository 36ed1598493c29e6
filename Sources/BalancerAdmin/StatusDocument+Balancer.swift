import BalancerCore
import BalancerNIO
import Foundation

extension StatusDocument {
    /// The document for `balancer` as it stands now.
    public init(of balancer: Balancer) async {
        let run = await balancer.updateRun()
        let drive = await balancer.updateDrive()
        let reload = balancer.reloadStatus
        nodes = balancer.directory.snapshot().map { entry in
            Node(
                of: entry.status, connections: entry.connections,
                override: balancer.directory.modeOverride(of: entry.status.id))
        }
        update = Update(
            of: run, drive: drive, canaryConnections: balancer.configuration.update.canaryConnections, now: Date())
        config = Config(
            generation: reload.generation,
            lastReload: LastReload(ok: reload.lastReload.ok, at: reload.lastReload.at, error: reload.lastReload.error))
        self.balancer = BalancerInfo(
            connections: balancer.connections.count, listeners: balancer.configuration.listeners.map(\.name))
        state = balancer.stateCondition.map { condition in
            State(
                ok: condition.ok, error: condition.error, since: condition.since,
                failedWrites: condition.failedWrites, unwrittenEvents: balancer.journal.unwritten)
        }
    }
}

extension StatusDocument.Node {
    init(of status: NodeStatus, connections: Int, override: NodeMode?) {
        self.init(
            id: status.id, mode: status.mode.rawValue, health: status.health.rawValue, admin: status.admin.rawValue,
            version: status.version, connections: connections, modeOverride: override?.rawValue,
            reconnectDrain: status.reconnectDrain, installDrain: status.installDrain)
    }
}

extension StatusDocument.Update {
    /// The run, and the driven update (`drive`) when one was started.
    init(of run: UpdateRun, drive: UpdateDrive? = nil, canaryConnections: Int = 0, now: Date = Date()) {
        self.init(
            state: run.state.rawValue, targetVersion: run.targetVersion, updated: run.updated, total: run.total,
            summary: run.summary, startingVersion: run.startingVersion, startedAt: run.startedAt,
            reconnectStartedAt: run.reconnectStartedAt, finishedAt: run.finishedAt,
            reconnects: run.reconnects.mapValues {
                StatusDocument.Reconnect(
                    phase: $0.phase.rawValue, attempts: $0.attempts, lastAnswer: $0.lastAnswer, deadline: $0.deadline)
            },
            flags: run.flags.map(\.description) + (drive.map { $0.state.isActive ? $0.flags : [] } ?? []),
            lastRun: run.lastRun.map {
                StatusDocument.LastRun(
                    outcome: $0.outcome.rawValue, at: $0.at, reason: $0.reason, targetVersion: $0.targetVersion,
                    startingVersion: $0.startingVersion, startedAt: $0.startedAt, by: $0.by)
            },
            drive: drive.map { DriveDocument(of: $0, canaryConnections: canaryConnections, now: now) })
    }
}
