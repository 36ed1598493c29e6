import Foundation

/// How an update run ended: what `/status` shows as `update.last_run`.
public struct UpdateRunEnding: Sendable, Hashable, Codable {
    /// The ways a run ends.
    public enum Outcome: String, Sendable, Hashable, Codable, CaseIterable {
        /// Every counted node is normal on the target version (after the reconnect, if one was needed).
        case completed
        /// Every counted node is back to normal on one version and none reached a higher one: a
        /// repair install of the same version, an aborted installer, a flapping status, an override.
        case noVersionChange = "no-version-change"
        /// Every counted node is back to normal on one version below the target: the nodes that
        /// reached the target were taken back.
        case rolledBack = "rolled-back"
        /// An operator closed the run (`ums-balancer update end`).
        case endedByOperator = "ended-by-operator"
    }

    public var outcome: Outcome
    public var at: Date
    /// Why, in words: "every server is normal on 12.06.100; none reached a higher version".
    public var reason: String
    public var targetVersion: String?
    public var startingVersion: String?
    public var startedAt: Date?
    /// Who ended it, when an operator did.
    public var by: String?

    public init(
        outcome: Outcome, at: Date, reason: String, targetVersion: String?, startingVersion: String?,
        startedAt: Date?, by: String? = nil
    ) {
        self.outcome = outcome
        self.at = at
        self.reason = reason
        self.targetVersion = targetVersion
        self.startingVersion = startingVersion
        self.startedAt = startedAt
        self.by = by
    }
}

/// The cluster as it stood when an operator ended a run: which versions were reported and which
/// nodes were in update mode. That situation alone does not start a new run (else ending a run
/// with a node left in update mode would start the next one at once); anything beyond it does.
public struct AcknowledgedSituation: Sendable, Hashable, Codable {
    public var versions: Set<String>
    public var inUpdateMode: Set<NodeID>

    public init(versions: Set<String>, inUpdateMode: Set<NodeID>) {
        self.versions = versions
        self.inUpdateMode = inUpdateMode
    }
}
