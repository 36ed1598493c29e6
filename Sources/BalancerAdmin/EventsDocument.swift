import BalancerStore
import Foundation

/// `GET /events`: the journal, oldest first. Page forward with `?after=` the last `id` seen.
public struct EventsDocument: Codable, Sendable, Hashable {
    public var events: [Event]
    /// False when no state database is configured: then the journal goes to the log only.
    public var persistent: Bool
    /// Why the list is empty when it always will be.
    public var note: String?

    /// One journal entry: what happened, to which node, who did it.
    public struct Event: Codable, Sendable, Hashable {
        public var id: Int64
        public var at: Date
        /// `run`, `target`, `mode`, `health`, `admin`, `refusal`, `drain`, `reconnect`, `release`, `reload`, `balancer`.
        public var kind: String
        public var node: String?
        /// `balancer`, `probe`, or the admin API client (`admin-api 127.0.0.1:54321`).
        public var actor: String
        public var message: String

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(id, forKey: .id)
            try container.encode(at, forKey: .at)
            try container.encode(kind, forKey: .kind)
            try container.encode(node, forKey: .node)
            try container.encode(actor, forKey: .actor)
            try container.encode(message, forKey: .message)
        }

        enum CodingKeys: String, CodingKey {
            case id, at, kind, node, actor, message
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(events, forKey: .events)
        try container.encode(persistent, forKey: .persistent)
        try container.encode(note, forKey: .note)
    }

    enum CodingKeys: String, CodingKey {
        case events, persistent, note
    }
}

extension EventsDocument {
    /// What an installation without `state` gets: the journal is only in the log.
    static let withoutStore = EventsDocument(
        events: [], persistent: false,
        note: "no state database configured (state.path): journal events go to the log only")

    init(_ events: [JournalEvent]) {
        self.init(
            events: events.map {
                Event(
                    id: $0.id ?? 0, at: $0.at, kind: $0.kind.rawValue, node: $0.node, actor: $0.actor,
                    message: $0.message)
            },
            persistent: true, note: nil)
    }
}
