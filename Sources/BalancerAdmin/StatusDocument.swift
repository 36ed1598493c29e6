import Foundation

/// `GET /status`: every node's three axes, the update run and the configuration generation.
/// Absent values are written as `null`, never left out, so scripts can rely on every key.
public struct StatusDocument: Codable, Sendable, Hashable {
    public var nodes: [Node]
    public var update: Update
    public var config: Config
    public var balancer: BalancerInfo
    /// The state database (`state.path`): null when none is configured.
    public var state: State?

    enum CodingKeys: String, CodingKey {
        case nodes, update, config, balancer, state
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(nodes, forKey: .nodes)
        try container.encode(update, forKey: .update)
        try container.encode(config, forKey: .config)
        try container.encode(balancer, forKey: .balancer)
        try container.encode(state, forKey: .state)
    }

    /// One configured node as the balancer sees it.
    public struct Node: Codable, Sendable, Hashable {
        public var id: String
        /// What routing uses: the reported mode, or the operator's override.
        public var mode: String
        public var health: String
        public var admin: String
        public var version: String?
        /// Connections (and connect attempts) counted against the node now.
        public var connections: Int
        /// The operator's mode override, or null when the node's own report counts.
        public var modeOverride: String?
        /// The balancer drained the node for its reconnect.
        public var reconnectDrain: Bool
        /// A driven update drained the node for its install.
        public var installDrain = false

        enum CodingKeys: String, CodingKey {
            case id, mode, health, admin, version, connections
            case modeOverride = "mode_override"
            case reconnectDrain = "reconnect_drain"
            case installDrain = "install_drain"
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(id, forKey: .id)
            try container.encode(mode, forKey: .mode)
            try container.encode(health, forKey: .health)
            try container.encode(admin, forKey: .admin)
            try container.encode(version, forKey: .version)
            try container.encode(connections, forKey: .connections)
            try container.encode(modeOverride, forKey: .modeOverride)
            try container.encode(reconnectDrain, forKey: .reconnectDrain)
            try container.encode(installDrain, forKey: .installDrain)
        }
    }

    /// The rolling update as derived from the nodes' reports.
    public struct Update: Codable, Sendable, Hashable {
        /// `idle`, `in-progress`, `reconnecting`, `completed` or `stalled`.
        public var state: String
        public var targetVersion: String?
        public var updated: Int
        public var total: Int
        /// "update 12.07.100: 2 of 3 servers updated, reconnecting ums1".
        public var summary: String
        public var startingVersion: String?
        public var startedAt: Date?
        public var reconnectStartedAt: Date?
        public var finishedAt: Date?
        /// Each node's way back from update mode, once the final node completed.
        public var reconnects: [String: Reconnect]
        /// What is overdue, sorted: `overdue` (older than `update.max_duration`) and
        /// `install-overdue:NODE` (installing longer than `update.install_timeout`); then, while a
        /// driven update is under way, `drive-stalled:NODE` (or `drive-stalled:reconnect`).
        public var flags: [String]
        /// How the most recent run that ended, ended (while `state` is `completed`: this run); null
        /// when none has.
        public var lastRun: LastRun?
        /// The driven update (`update start`), under way or the last one; null when none was started.
        public var drive: DriveDocument?

        enum CodingKeys: String, CodingKey {
            case state, updated, total, summary, reconnects, flags, drive
            case targetVersion = "target_version"
            case startingVersion = "starting_version"
            case startedAt = "started_at"
            case reconnectStartedAt = "reconnect_started_at"
            case finishedAt = "finished_at"
            case lastRun = "last_run"
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(state, forKey: .state)
            try container.encode(targetVersion, forKey: .targetVersion)
            try container.encode(updated, forKey: .updated)
            try container.encode(total, forKey: .total)
            try container.encode(summary, forKey: .summary)
            try container.encode(startingVersion, forKey: .startingVersion)
            try container.encode(startedAt, forKey: .startedAt)
            try container.encode(reconnectStartedAt, forKey: .reconnectStartedAt)
            try container.encode(finishedAt, forKey: .finishedAt)
            try container.encode(reconnects, forKey: .reconnects)
            try container.encode(flags, forKey: .flags)
            try container.encode(lastRun, forKey: .lastRun)
            try container.encode(drive, forKey: .drive)
        }
    }

    /// `update.last_run`: `completed`, `no-version-change`, `rolled-back` or `ended-by-operator`,
    /// when, why, and (for an operator's end) by whom.
    public struct LastRun: Codable, Sendable, Hashable {
        public var outcome: String
        public var at: Date
        public var reason: String
        public var targetVersion: String?
        public var startingVersion: String?
        public var startedAt: Date?
        public var by: String?

        enum CodingKeys: String, CodingKey {
            case outcome, at, reason, by
            case targetVersion = "target_version"
            case startingVersion = "starting_version"
            case startedAt = "started_at"
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(outcome, forKey: .outcome)
            try container.encode(at, forKey: .at)
            try container.encode(reason, forKey: .reason)
            try container.encode(targetVersion, forKey: .targetVersion)
            try container.encode(startingVersion, forKey: .startingVersion)
            try container.encode(startedAt, forKey: .startedAt)
            try container.encode(by, forKey: .by)
        }
    }

    /// One node's reconnect: `draining`, `due`, `calling`, `waiting`, `done` or `failed`.
    public struct Reconnect: Codable, Sendable, Hashable {
        public var phase: String
        public var attempts: Int
        public var lastAnswer: String?
        public var deadline: Date?

        enum CodingKeys: String, CodingKey {
            case phase, attempts, deadline
            case lastAnswer = "last_answer"
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(phase, forKey: .phase)
            try container.encode(attempts, forKey: .attempts)
            try container.encode(lastAnswer, forKey: .lastAnswer)
            try container.encode(deadline, forKey: .deadline)
        }
    }

    /// The configuration in force: its generation and how the last reload went.
    public struct Config: Codable, Sendable, Hashable {
        /// 1 at start, +1 per accepted reload.
        public var generation: Int
        public var lastReload: LastReload

        enum CodingKeys: String, CodingKey {
            case generation
            case lastReload = "last_reload"
        }
    }

    /// `{ok, at, error}`: error holds the `FILE:LINE:COL: ...` lines of a rejected file.
    public struct LastReload: Codable, Sendable, Hashable {
        public var ok: Bool
        public var at: Date
        public var error: String?

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(ok, forKey: .ok)
            try container.encode(at, forKey: .at)
            try container.encode(error, forKey: .error)
        }

        enum CodingKeys: String, CodingKey {
            case ok, at, error
        }
    }

    /// `{ok, error, since, failed_writes, unwritten_events}`: whether the state database takes
    /// writes; while it does not, the balancer proxies on and keeps journal events queued.
    public struct State: Codable, Sendable, Hashable {
        public var ok: Bool
        public var error: String?
        public var since: Date?
        public var failedWrites: Int
        /// Journal events waiting for the store.
        public var unwrittenEvents: Int

        enum CodingKeys: String, CodingKey {
            case ok, error, since
            case failedWrites = "failed_writes"
            case unwrittenEvents = "unwritten_events"
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(ok, forKey: .ok)
            try container.encode(error, forKey: .error)
            try container.encode(since, forKey: .since)
            try container.encode(failedWrites, forKey: .failedWrites)
            try container.encode(unwrittenEvents, forKey: .unwrittenEvents)
        }
    }

    /// The balancer process itself.
    public struct BalancerInfo: Codable, Sendable, Hashable {
        /// Client connections open across all listeners.
        public var connections: Int
        /// Listener names, in configuration order.
        public var listeners: [String]
    }
}

extension StatusDocument.Node {
    /// Reads a node; `install_drain` may be absent (a balancer from before install drains).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            id: try container.decode(String.self, forKey: .id),
            mode: try container.decode(String.self, forKey: .mode),
            health: try container.decode(String.self, forKey: .health),
            admin: try container.decode(String.self, forKey: .admin),
            version: try container.decodeIfPresent(String.self, forKey: .version),
            connections: try container.decode(Int.self, forKey: .connections),
            modeOverride: try container.decodeIfPresent(String.self, forKey: .modeOverride),
            reconnectDrain: try container.decode(Bool.self, forKey: .reconnectDrain),
            installDrain: try container.decodeIfPresent(Bool.self, forKey: .installDrain) ?? false)
    }
}
