import Foundation
import GRDB

/// A node's row in the `cluster_nodes` registry.
struct ClusterNodeRow: Sendable, Hashable {
    var id: String
    var version: String
    var mode: String
    var database: String
}

/// The `productive.sqlite` shared by every node of a cluster (several processes: WAL and a busy timeout).
final class ProductiveDatabase: Sendable {
    static let fileName = "productive.sqlite"

    let pool: DatabasePool

    /// Opens (creating if missing) the productive database; a new one gets `initialSchema` as schema version.
    init(directory: URL, initialSchema: NodeVersion) async throws {
        var configuration = GRDB.Configuration()
        configuration.busyMode = .timeout(10)
        configuration.label = "productive"
        pool = try await Self.open(directory.appendingPathComponent(Self.fileName).path, configuration)
        try await pool.writeWithoutTransaction { db in
            try db.inTransaction(.immediate) {
                try db.execute(
                    sql: """
                        CREATE TABLE IF NOT EXISTS schema_info (
                            id INTEGER PRIMARY KEY CHECK (id = 1),
                            version TEXT NOT NULL,
                            renewed_at TEXT NOT NULL DEFAULT (datetime('now')));
                        CREATE TABLE IF NOT EXISTS cluster_nodes (
                            id TEXT PRIMARY KEY,
                            version TEXT NOT NULL,
                            mode TEXT NOT NULL,
                            database TEXT NOT NULL,
                            updated_at TEXT NOT NULL DEFAULT (datetime('now')));
                        """)
                try ProfileStore.createTable(db)
                try db.execute(
                    sql: "INSERT OR IGNORE INTO schema_info (id, version) VALUES (1, ?)",
                    arguments: [initialSchema.text])
                return .commit
            }
        }
    }

    /// Opens the pool, retrying while another node holds the lock: switching a new file to WAL
    /// (`PRAGMA journal_mode = WAL`) answers SQLITE_BUSY at once, without the busy timeout, when
    /// nodes of a cluster start together.
    private static func open(_ path: String, _ configuration: GRDB.Configuration) async throws -> DatabasePool {
        var attempt = 0
        while true {
            do {
                return try DatabasePool(path: path, configuration: configuration)
            } catch let error as DatabaseError where [.SQLITE_BUSY, .SQLITE_LOCKED].contains(error.resultCode) {
                attempt += 1
                guard attempt < 100 else { throw error }
                try await Task.sleep(for: .milliseconds(Int.random(in: 20...100)))
            }
        }
    }

    /// The productive schema version.
    func schemaVersion() async throws -> NodeVersion {
        let text = try await pool.read { db in
            try String.fetchOne(db, sql: "SELECT version FROM schema_info WHERE id = 1")
        }
        guard let text, let version = NodeVersion(text) else {
            throw DatabaseError(message: "schema_info holds no valid version")
        }
        return version
    }

    /// The registry row of node `id`, if any.
    func node(id: String) async throws -> ClusterNodeRow? {
        try await pool.read { db in
            try Row.fetchOne(
                db, sql: "SELECT id, version, mode, database FROM cluster_nodes WHERE id = ?",
                arguments: [id]
            ).map { ClusterNodeRow(id: $0["id"], version: $0["version"], mode: $0["mode"], database: $0["database"]) }
        }
    }

    /// Inserts or refreshes the registry row of a node.
    func register(_ row: ClusterNodeRow) async throws {
        try await pool.write { db in try Self.upsert(row, db) }
    }

    /// Atomically decides how node `id`'s install of `target` ends, renews the schema if every other
    /// node is on `target`, and records the node's new row.
    func completeInstall(id: String, target: NodeVersion) async throws -> NodeStateMachine.InstallOutcome {
        try await pool.writeWithoutTransaction { db in
            var outcome = NodeStateMachine.InstallOutcome.useLocalCopy
            // IMMEDIATE so that two nodes finishing at once see each other's new version.
            try db.inTransaction(.immediate) {
                let others = try String.fetchAll(
                    db, sql: "SELECT version FROM cluster_nodes WHERE id <> ?",
                    arguments: [id])
                // An unparsable version counts as "not on target".
                let versions = others.map { NodeVersion($0) ?? NodeVersion("0")! }
                outcome = NodeStateMachine.installOutcome(target: target, otherNodeVersions: versions)
                let database: DatabaseKind
                switch outcome {
                case .renewProductiveSchema:
                    try db.execute(
                        sql: "UPDATE schema_info SET version = ?, renewed_at = datetime('now') WHERE id = 1",
                        arguments: [target.text])
                    database = .productive
                case .useLocalCopy:
                    database = .localCopy
                }
                let mode: NodeMode = outcome == .renewProductiveSchema ? .normal : .update
                try Self.upsert(
                    ClusterNodeRow(id: id, version: target.text, mode: mode.rawValue, database: database.rawValue), db)
                return .commit
            }
            return outcome
        }
    }

    /// Writes a consistent snapshot of the productive database to a new file at `path`.
    func copy(toNewFile path: String) async throws {
        try await pool.vacuum(into: path)
    }

    private static func upsert(_ row: ClusterNodeRow, _ db: Database) throws {
        try db.execute(
            sql: """
                INSERT INTO cluster_nodes (id, version, mode, database, updated_at)
                VALUES (?, ?, ?, ?, datetime('now'))
                ON CONFLICT(id) DO UPDATE SET version = excluded.version, mode = excluded.mode,
                    database = excluded.database, updated_at = excluded.updated_at
                """,
            arguments: [row.id, row.version, row.mode, row.database])
    }
}
