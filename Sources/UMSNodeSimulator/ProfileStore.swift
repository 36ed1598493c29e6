import Foundation
import GRDB

/// Device profiles (MAC → JSON settings), in whichever database a node works on.
enum ProfileStore {
    static func createTable(_ db: Database) throws {
        try db.execute(
            sql: """
                CREATE TABLE IF NOT EXISTS profiles (
                    mac TEXT PRIMARY KEY,
                    settings TEXT NOT NULL,
                    created_at TEXT NOT NULL DEFAULT (datetime('now')))
                """)
    }

    /// Normalizes a MAC to 12 upper-case hex digits; nil if it is not one (`:` and `-` separators allowed).
    static func normalizedMAC(_ text: String) -> String? {
        let hex = text.filter { $0 != ":" && $0 != "-" }.uppercased()
        guard hex.count == 12, hex.allSatisfy({ $0.isHexDigit && $0.isASCII }) else { return nil }
        return hex
    }

    /// The profile of `mac` as JSON text, creating the default one on first request.
    static func profile(mac: String, in writer: any DatabaseWriter) async throws -> String {
        let existing = try await writer.read { db in
            try String.fetchOne(db, sql: "SELECT settings FROM profiles WHERE mac = ?", arguments: [mac])
        }
        if let existing { return existing }
        let settings = defaultSettings(mac: mac)
        return try await writer.write { db in
            try db.execute(
                sql: "INSERT OR IGNORE INTO profiles (mac, settings) VALUES (?, ?)",
                arguments: [mac, settings])
            return try String.fetchOne(db, sql: "SELECT settings FROM profiles WHERE mac = ?", arguments: [mac])
                ?? settings
        }
    }

    /// The settings a device gets before anyone configured it.
    static func defaultSettings(mac: String) -> String {
        let object: [String: Any] = [
            "mac": mac,
            "name": "IGEL-\(mac)",
            "firmware_channel": "stable",
            "settings": ["locale": "en_US", "screen_lock_minutes": 15, "session": "rdp-default"],
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
