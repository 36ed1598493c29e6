import BalancerCore
import Foundation

/// `/status` `update.drive` (and the answer of `POST /update/start|pause|resume|abort`): a driven
/// update, its plan and where it stands in it (each step `done`, `now` or `next`), how long each
/// step took and an estimate for the rest. Absent values are written as `null`.
public struct DriveDocument: Codable, Sendable, Hashable {
    /// `running`, `paused`, `stalled`, `completed` or `aborted`.
    public var state: String
    public var targetVersion: String
    public var startingVersion: String?
    /// "driving 12.07.100: 1 of 4 servers done, ums2 installing, next ums3".
    public var summary: String
    public var startedAt: Date
    public var startedBy: String
    /// Started with `--force` past a plan that was not ready.
    public var forced: Bool
    public var finishedAt: Date?
    /// Why the drive last changed state.
    public var reason: String?
    /// Seconds the remaining steps will take, judged by the steps done (the reconnect not included).
    public var estimatedRemainingSeconds: Double?
    /// Device connections each returning node must serve before the next starts.
    public var canaryConnections: Int
    /// One per node, in the plan's order.
    public var steps: [Step]
    /// The reconnect of the update-mode nodes, after the last node.
    public var reconnect: Reconnect

    enum CodingKeys: String, CodingKey {
        case state, summary, forced, reason, steps, reconnect
        case targetVersion = "target_version"
        case startingVersion = "starting_version"
        case startedAt = "started_at"
        case startedBy = "started_by"
        case finishedAt = "finished_at"
        case estimatedRemainingSeconds = "estimated_remaining_seconds"
        case canaryConnections = "canary_connections"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(state, forKey: .state)
        try container.encode(targetVersion, forKey: .targetVersion)
        try container.encode(startingVersion, forKey: .startingVersion)
        try container.encode(summary, forKey: .summary)
        try container.encode(startedAt, forKey: .startedAt)
        try container.encode(startedBy, forKey: .startedBy)
        try container.encode(forced, forKey: .forced)
        try container.encode(finishedAt, forKey: .finishedAt)
        try container.encode(reason, forKey: .reason)
        try container.encode(estimatedRemainingSeconds, forKey: .estimatedRemainingSeconds)
        try container.encode(canaryConnections, forKey: .canaryConnections)
        try container.encode(steps, forKey: .steps)
        try container.encode(reconnect, forKey: .reconnect)
    }

    /// One node's step.
    public struct Step: Codable, Sendable, Hashable {
        public var node: String
        /// `update-mode` (comes back in update mode) or `last` (renews the productive schema).
        public var role: String
        /// `pending`, `draining`, `calling`, `installing`, `canary` or `done`.
        public var phase: String
        /// `done`, `now` or `next`.
        public var position: String
        public var attempts: Int
        public var startedAt: Date?
        public var backAt: Date?
        public var finishedAt: Date?
        /// From the install call to the step's end (so far, while it runs).
        public var seconds: Double?
        public var canaryServed: Int
        public var deadline: Date?
        /// Why the step is stuck, or null.
        public var stalled: String?
        public var lastAnswer: String?

        enum CodingKeys: String, CodingKey {
            case node, role, phase, position, attempts, seconds, deadline, stalled
            case startedAt = "started_at"
            case backAt = "back_at"
            case finishedAt = "finished_at"
            case canaryServed = "canary_served"
            case lastAnswer = "last_answer"
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(node, forKey: .node)
            try container.encode(role, forKey: .role)
            try container.encode(phase, forKey: .phase)
            try container.encode(position, forKey: .position)
            try container.encode(attempts, forKey: .attempts)
            try container.encode(startedAt, forKey: .startedAt)
            try container.encode(backAt, forKey: .backAt)
            try container.encode(finishedAt, forKey: .finishedAt)
            try container.encode(seconds, forKey: .seconds)
            try container.encode(canaryServed, forKey: .canaryServed)
            try container.encode(deadline, forKey: .deadline)
            try container.encode(stalled, forKey: .stalled)
            try container.encode(lastAnswer, forKey: .lastAnswer)
        }
    }

    /// The reconnect stage: `position` `done`, `now` or `next`.
    public struct Reconnect: Codable, Sendable, Hashable {
        public var position: String
        public var startedAt: Date?
        public var finishedAt: Date?
        public var seconds: Double?

        enum CodingKeys: String, CodingKey {
            case position, seconds
            case startedAt = "started_at"
            case finishedAt = "finished_at"
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(position, forKey: .position)
            try container.encode(startedAt, forKey: .startedAt)
            try container.encode(finishedAt, forKey: .finishedAt)
            try container.encode(seconds, forKey: .seconds)
        }
    }

    /// The document of `drive` at `now`; `canaryConnections` is the gate in force.
    public init(of drive: UpdateDrive, canaryConnections: Int, now: Date) {
        state = drive.state.rawValue
        targetVersion = drive.targetVersion
        startingVersion = drive.startingVersion
        summary = drive.summary
        startedAt = drive.startedAt
        startedBy = drive.startedBy
        forced = drive.forced
        finishedAt = drive.finishedAt
        reason = drive.reason
        estimatedRemainingSeconds = drive.estimatedRemaining(now: now).map { ($0 * 10).rounded() / 10 }
        self.canaryConnections = canaryConnections
        let current = drive.currentIndex
        let end = drive.finishedAt ?? now
        steps = drive.steps.enumerated().map { index, step in
            let position =
                step.phase == .done ? "done" : index == current && step.phase != .pending ? "now" : "next"
            let seconds = step.startedAt.map { (step.finishedAt ?? end).timeIntervalSince($0) }
            return Step(
                node: step.node, role: index == drive.steps.count - 1 ? "last" : "update-mode",
                phase: step.phase.rawValue, position: position, attempts: step.attempts, startedAt: step.startedAt,
                backAt: step.backAt, finishedAt: step.finishedAt, seconds: seconds.map { ($0 * 10).rounded() / 10 },
                canaryServed: step.canaryServed, deadline: step.deadline, stalled: step.stalled,
                lastAnswer: step.lastAnswer)
        }
        let stage = drive.reconnect
        reconnect = Reconnect(
            position: stage?.finishedAt != nil ? "done" : stage != nil ? "now" : "next", startedAt: stage?.startedAt,
            finishedAt: stage?.finishedAt,
            seconds: stage.map { (($0.finishedAt ?? end).timeIntervalSince($0.startedAt) * 10).rounded() / 10 })
    }
}
