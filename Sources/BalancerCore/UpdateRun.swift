import Foundation

/// A rolling update as the balancer sees it, derived from what the nodes report; persisted so a
/// restarted balancer knows where the update stands.
public struct UpdateRun: Sendable, Hashable {
    /// Where the update stands.
    public enum State: String, Sendable, Hashable, Codable, CaseIterable {
        /// No run is recorded now (`lastRun` says how the previous one ended, if any did).
        case idle
        /// Nodes are being installed; some may run in update mode.
        case inProgress = "in-progress"
        /// The final node completed; update-mode nodes are being told to reconnect.
        case reconnecting
        /// Every node is normal on the target version; kept until the next run starts.
        case completed
        /// A node did not come back from its reconnect in time; an operator can retry.
        case stalled
    }

    public var state: State = .idle
    /// The version every node ran when the run started.
    public var startingVersion: String?
    /// The highest version reported, once it is higher than the starting version.
    public var targetVersion: String?
    /// Nodes not in maintenance that report the target version in normal, update or reconnecting mode.
    public var updated = 0
    /// Nodes not in maintenance.
    public var total = 0
    public var startedAt: Date?
    public var reconnectStartedAt: Date?
    public var finishedAt: Date?
    /// The reconnect of each node that was in update mode when the final node completed.
    public var reconnects: [NodeID: NodeReconnect] = [:]
    /// Since when each counted node has been reporting `installing` (a failed probe in between,
    /// which makes the node `unknown`, does not restart its clock).
    public var installingSince: [NodeID: Date] = [:]
    /// How the most recent run that ended, ended: while `state` is `completed` that is this run.
    public var lastRun: UpdateRunEnding?
    /// What the cluster looked like when an operator ended a run that left it mixed; that
    /// situation does not start a new run by itself (see `UpdateRunMachine`).
    public var acknowledged: AcknowledgedSituation?
    /// What is overdue now, sorted by name. Derived from the run, the nodes and the clock, so it is
    /// not persisted: a restarted balancer derives (and logs) it again.
    public var flags: [UpdateFlag] = []

    public init() {}

    /// An update is under way: what the `freeze` console policy looks at.
    public var isRunning: Bool {
        [.inProgress, .reconnecting, .stalled].contains(state)
    }

    /// The counts of a run under way, for what routing tells refused clients; nil when none is.
    public var progress: UpdateProgress? {
        isRunning ? UpdateProgress(updated: updated, total: total) : nil
    }

    /// "update 12.07.100: 2 of 3 servers updated, reconnecting ums1".
    public var summary: String {
        guard state != .idle else {
            guard let lastRun else { return "no update recorded" }
            return "no update running; the last run ended \(lastRun.outcome.rawValue): \(lastRun.reason)"
        }
        var text = "update \(targetVersion ?? "(version not yet known)"): \(updated) of \(total) servers updated"
        let pending = reconnects.filter { $0.value.phase != .done }.keys.sorted()
        let queued = reconnects.filter { $0.value.phase == .queued }.keys.sorted()
        let active = pending.filter { !queued.contains($0) }
        switch state {
        case .reconnecting where !active.isEmpty:
            text += ", reconnecting \(active.joined(separator: ", "))"
            if !queued.isEmpty { text += " (then \(queued.joined(separator: ", ")))" }
        case .stalled: text += ", stalled: \(pending.joined(separator: ", ")) did not reconnect"
        case .completed: text += ", completed"
        default: break
        }
        if !flags.isEmpty { text += " [\(flags.map(\.description).joined(separator: ", "))]" }
        return text
    }
}

// MARK: - Persistence

extension UpdateRun: Codable {
    enum CodingKeys: String, CodingKey {
        case state, startingVersion, targetVersion, updated, total, startedAt, reconnectStartedAt, finishedAt
        case reconnects, installingSince, lastRun, acknowledged
    }

    // Every key but `state` may be missing: documents saved by earlier versions lack the newer ones,
    // and a balancer upgraded mid-update must still read its run.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        state = try container.decode(State.self, forKey: .state)
        startingVersion = try container.decodeIfPresent(String.self, forKey: .startingVersion)
        targetVersion = try container.decodeIfPresent(String.self, forKey: .targetVersion)
        updated = try container.decodeIfPresent(Int.self, forKey: .updated) ?? 0
        total = try container.decodeIfPresent(Int.self, forKey: .total) ?? 0
        startedAt = try container.decodeIfPresent(Date.self, forKey: .startedAt)
        reconnectStartedAt = try container.decodeIfPresent(Date.self, forKey: .reconnectStartedAt)
        finishedAt = try container.decodeIfPresent(Date.self, forKey: .finishedAt)
        reconnects = try container.decodeIfPresent([NodeID: NodeReconnect].self, forKey: .reconnects) ?? [:]
        installingSince = try container.decodeIfPresent([NodeID: Date].self, forKey: .installingSince) ?? [:]
        lastRun = try container.decodeIfPresent(UpdateRunEnding.self, forKey: .lastRun)
        acknowledged = try container.decodeIfPresent(AcknowledgedSituation.self, forKey: .acknowledged)
    }
}

/// One node's way back from update mode to the productive database.
public struct NodeReconnect: Sendable, Hashable, Codable {
    /// Where the node's reconnect stands.
    public enum Phase: String, Sendable, Hashable, Codable {
        /// Waiting for its turn: `reconnect.max_unavailable` nodes are unavailable now.
        case queued
        /// No new connections; waiting for existing ones to finish or the drain timeout.
        case draining
        /// Past its drain timeout: the balancer closes its remaining connections at
        /// `update.drain_rate` per second, then calls its reconnect.
        case closing
        /// Ready for a (next) call of its reconnect action at `nextAttemptAt`.
        case due
        /// A call is under way.
        case calling
        /// The node accepted; waiting for it to report normal mode.
        case waiting
        /// Back in normal mode on the productive database.
        case done
        /// Retries exhausted or deadline missed.
        case failed
    }

    public var phase: Phase
    public var drainStartedAt: Date
    public var attempts = 0
    public var nextAttemptAt: Date?
    /// Set at the first call: the node must be back by then.
    public var deadline: Date?
    public var lastAnswer: String?

    public init(phase: Phase, drainStartedAt: Date) {
        self.phase = phase
        self.drainStartedAt = drainStartedAt
    }
}

/// "n of m servers updated" of a run under way, exactly as `/status` counts them.
public struct UpdateProgress: Sendable, Hashable {
    public var updated: Int
    public var total: Int

    public init(updated: Int, total: Int) {
        self.updated = updated
        self.total = total
    }
}
