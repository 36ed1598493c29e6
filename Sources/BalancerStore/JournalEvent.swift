import BalancerCore
import Foundation

/// One entry of the append-only event journal: what happened, to which node, who did it.
public struct JournalEvent: Sendable, Hashable, Codable {
    /// What kind of thing happened; stable names that scripts filter on.
    public enum Kind: String, Sendable, Hashable, Codable, CaseIterable {
        case run, target, flag, mode, health, admin, refusal, drain, reconnect, release, reload, balancer
        /// A driven update's steps (`ums-balancer update start`).
        case drive
    }

    public var id: Int64?
    public var at: Date
    public var kind: Kind
    public var node: NodeID?
    /// Who caused it: `balancer`, `probe`, or the admin API client.
    public var actor: String
    public var message: String

    public init(
        id: Int64? = nil, at: Date, kind: Kind, node: NodeID? = nil, actor: String = "balancer", message: String
    ) {
        self.id = id
        self.at = at
        self.kind = kind
        self.node = node
        self.actor = actor
        self.message = message
    }
}
