import BalancerCore
import Foundation
import GRDB

/// Why the state database cannot be used; said at start, before anything listens.
public enum StateStoreError: Error, CustomStringConvertible {
    /// The file cannot be opened, created or written.
    case cannotOpen(path: String, reason: String)
    /// The file is not a database or is damaged.
    case corrupt(path: String, reason: String)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let reason): "state database \(path): cannot open: \(reason)"
        case .corrupt(let path, let reason):
            "state database \(path) is damaged or not a database (\(reason)); move it away to start with an empty one"
        }
    }
}

/// The update run and the event journal in SQLite (WAL). All access is async on GRDB's own
/// queues, never on an event loop.
public final class StateStore: Sendable {
    public let path: String
    private let pool: DatabasePool

    /// Opens (and if needed creates and migrates) the database at `path`.
    public init(path: String) throws(StateStoreError) {
        self.path = path
        let directory = (path as NSString).deletingLastPathComponent
        do {
            if !directory.isEmpty {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            }
            var configuration = Configuration()
            configuration.busyMode = .timeout(5)
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrator.migrate(pool)
            try pool.read { db in _ = try Row.fetchOne(db, sql: "PRAGMA quick_check") }
        } catch let error as DatabaseError where [.SQLITE_NOTADB, .SQLITE_CORRUPT].contains(error.resultCode) {
            throw .corrupt(path: path, reason: error.message ?? "\(error.resultCode)")
        } catch let error as DatabaseError {
            throw .cannotOpen(path: path, reason: error.message ?? "\(error.resultCode)")
        } catch {
            throw .cannotOpen(path: path, reason: "\(error.localizedDescription)")
        }
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: update run and journal") { db in
            try db.create(table: "update_run") { table in
                table.primaryKey("id", .integer).check { $0 == 1 }
                table.column("state", .text).notNull()
                table.column("document", .text).notNull()
                table.column("saved_at", .datetime).notNull()
            }
            try db.create(table: "event") { table in
                table.autoIncrementedPrimaryKey("id")
                table.column("at", .datetime).notNull().indexed()
                table.column("kind", .text).notNull()
                table.column("node", .text)
                table.column("actor", .text).notNull()
                table.column("message", .text).notNull()
            }
        }
        return migrator
    }

    // MARK: - Update run

    /// The persisted update run, if any was recorded.
    public func loadRun() async throws -> UpdateRun? {
        try await pool.read { db in
            guard let document = try String.fetchOne(db, sql: "SELECT document FROM update_run WHERE id = 1") else {
                return nil
            }
            return try JSONDecoder.iso8601.decode(UpdateRun.self, from: Data(document.utf8))
        }
    }

    /// Replaces the persisted update run.
    public func saveRun(_ run: UpdateRun) async throws {
        let document = String(decoding: try JSONEncoder.iso8601.encode(run), as: UTF8.self)
        try await pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO update_run (id, state, document, saved_at) VALUES (1, ?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET state = excluded.state, document = excluded.document,
                    saved_at = excluded.saved_at
                    """,
                arguments: [run.state.rawValue, document, Date()])
        }
    }

    // MARK: - Journal

    /// Appends events in one transaction, in order.
    public func append(_ events: [JournalEvent]) async throws {
        guard !events.isEmpty else { return }
        try await pool.write { db in
            for event in events {
                try db.execute(
                    sql: "INSERT INTO event (at, kind, node, actor, message) VALUES (?, ?, ?, ?, ?)",
                    arguments: [event.at, event.kind.rawValue, event.node, event.actor, event.message])
            }
        }
    }

    /// The most recent events, oldest first; `after` skips events up to that id.
    public func events(limit: Int = 200, after: Int64? = nil) async throws -> [JournalEvent] {
        try await pool.read { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM (SELECT id, at, kind, node, actor, message FROM event WHERE id > ?
                    ORDER BY id DESC LIMIT ?) ORDER BY id
                    """,
                arguments: [after ?? 0, limit])
            return rows.map { row in
                JournalEvent(
                    id: row["id"], at: row["at"], kind: JournalEvent.Kind(rawValue: row["kind"]) ?? .balancer,
                    node: row["node"], actor: row["actor"], message: row["message"])
            }
        }
    }
}

extension JSONEncoder {
    static var iso8601: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }
}

extension JSONDecoder {
    static var iso8601: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}
