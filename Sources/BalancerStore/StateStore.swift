import BalancerCore
import Foundation
import GRDB
import Logging
import Metrics
import Synchronization

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

/// The update run and the event journal in SQLite. All access is async on GRDB's own queue,
/// never on an event loop or a relay thread.
///
/// The one balancer process that owns the file holds it in exclusive locking mode: SQLite then
/// keeps the WAL index in heap memory instead of a memory-mapped `-shm` file, so a disk that
/// refuses writes (full, failing, read-only, `chattr +i`) makes writes fail with an error instead
/// of killing the process with SIGBUS, and a second balancer on the same file is refused at start.
/// A failing store never stops the data path: writes fail, are counted and logged (once, then at
/// a slow interval), and `condition` says so for `/status`.
public final class StateStore: Sendable {
    public let path: String
    private let queue: DatabaseQueue
    private let health: Mutex<StoreHealth>
    private let logger: Logger
    private let failedWrites = Counter(label: "ums_balancer_state_write_failures_total")

    /// Opens (and if needed creates and migrates) the database at `path`.
    public init(path: String, logger: Logger = Logger(label: "ums-balancer.state")) throws(StateStoreError) {
        self.path = path
        self.logger = logger
        health = Mutex(StoreHealth())
        let directory = (path as NSString).deletingLastPathComponent
        do {
            if !directory.isEmpty {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            }
            var configuration = Configuration()
            // Short: at start a lock held this long is another process, not a slow disk.
            configuration.busyMode = .timeout(1)
            configuration.journalMode = .wal
            configuration.prepareDatabase { db in
                // Before the first access, or SQLite maps the WAL index into a shared `-shm` file.
                try db.execute(sql: "PRAGMA locking_mode = EXCLUSIVE")
            }
            queue = try DatabaseQueue(path: path, configuration: configuration)
            try Self.migrator.migrate(queue)
            try queue.read { db in _ = try Row.fetchOne(db, sql: "PRAGMA quick_check") }
        } catch let error as DatabaseError where [.SQLITE_NOTADB, .SQLITE_CORRUPT].contains(error.resultCode) {
            throw .corrupt(path: path, reason: error.message ?? "\(error.resultCode)")
        } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY {
            throw .cannotOpen(
                path: path, reason: "in use by another process (another ums-balancer with the same state.path?)")
        } catch let error as DatabaseError {
            throw .cannotOpen(path: path, reason: error.message ?? "\(error.resultCode)")
        } catch {
            throw .cannotOpen(path: path, reason: "\(error.localizedDescription)")
        }
    }

    /// Whether the last write succeeded, and since when it has not.
    public var condition: StoreCondition { health.withLock { $0.condition } }

    /// Runs `updates` in a write transaction, keeping the store's condition and its log.
    private func write(_ updates: @escaping @Sendable (Database) throws -> Void) async throws {
        do {
            try await queue.write(updates)
        } catch {
            failedWrites.increment()
            let message = (error as? DatabaseError).map { $0.message ?? "\($0.resultCode)" } ?? "\(error)"
            let report = health.withLock { $0.failed(message, at: Date()) }
            if let report {
                logger.error(
                    "\(report): the balancer goes on without it",
                    metadata: ["path": "\(path)", "error": "\(message)"])
            }
            throw error
        }
        if let recovered = health.withLock({ $0.succeeded(at: Date()) }) {
            logger.notice("\(recovered)", metadata: ["path": "\(path)"])
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
        migrator.registerMigration("v2: driven update") { db in
            try db.create(table: "update_drive") { table in
                table.primaryKey("id", .integer).check { $0 == 1 }
                table.column("state", .text).notNull()
                table.column("document", .text).notNull()
                table.column("saved_at", .datetime).notNull()
            }
        }
        return migrator
    }

    // MARK: - Update run and driven update

    /// The persisted update run, if any was recorded.
    public func loadRun() async throws -> UpdateRun? {
        try await loadDocument(UpdateRun.self, from: "update_run")
    }

    /// Replaces the persisted update run.
    public func saveRun(_ run: UpdateRun) async throws {
        try await saveDocument(run, state: run.state.rawValue, in: "update_run")
    }

    /// The persisted driven update (under way, or the last one), if any was started.
    public func loadDrive() async throws -> UpdateDrive? {
        try await loadDocument(UpdateDrive.self, from: "update_drive")
    }

    /// Replaces the persisted driven update; returns once it is on disk (an install call waits for it).
    public func saveDrive(_ drive: UpdateDrive) async throws {
        try await saveDocument(drive, state: drive.state.rawValue, in: "update_drive")
    }

    /// The one row (id 1) of a table that holds a single JSON document.
    private func loadDocument<Document: Decodable & Sendable>(_ type: Document.Type, from table: String) async throws
        -> Document?
    {
        try await queue.read { db in
            guard let document = try String.fetchOne(db, sql: "SELECT document FROM \(table) WHERE id = 1") else {
                return nil
            }
            return try JSONDecoder.iso8601.decode(Document.self, from: Data(document.utf8))
        }
    }

    private func saveDocument(_ value: some Encodable, state: String, in table: String) async throws {
        let document = String(decoding: try JSONEncoder.iso8601.encode(value), as: UTF8.self)
        try await write { db in
            try db.execute(
                sql: """
                    INSERT INTO \(table) (id, state, document, saved_at) VALUES (1, ?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET state = excluded.state, document = excluded.document,
                    saved_at = excluded.saved_at
                    """,
                arguments: [state, document, Date()])
        }
    }

    // MARK: - Journal

    /// Appends events in one transaction, in order.
    public func append(_ events: [JournalEvent]) async throws {
        guard !events.isEmpty else { return }
        try await write { db in
            for event in events {
                try db.execute(
                    sql: "INSERT INTO event (at, kind, node, actor, message) VALUES (?, ?, ?, ?, ?)",
                    arguments: [event.at, event.kind.rawValue, event.node, event.actor, event.message])
            }
        }
    }

    /// The most recent events, oldest first; `after` skips events up to that id.
    public func events(limit: Int = 200, after: Int64? = nil) async throws -> [JournalEvent] {
        try await queue.read { db in
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
