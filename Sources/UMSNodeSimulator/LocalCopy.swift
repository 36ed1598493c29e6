import Foundation
import GRDB

/// A node's own `local-ID.sqlite` copy of the productive database, used in update mode.
enum LocalCopy {
    /// The path of node `id`'s local copy.
    static func path(id: String, in directory: URL) -> String {
        directory.appendingPathComponent("local-\(id).sqlite").path
    }

    /// Replaces any old copy with a fresh snapshot of the productive database and opens it.
    static func make(from productive: ProductiveDatabase, id: String, in directory: URL) async throws -> DatabaseQueue {
        let path = path(id: id, in: directory)
        try remove(at: path)
        try await productive.copy(toNewFile: path)
        return try open(at: path)
    }

    /// Opens an existing copy.
    static func open(at path: String) throws -> DatabaseQueue {
        var configuration = GRDB.Configuration()
        configuration.busyMode = .timeout(10)
        configuration.label = "local-copy"
        return try DatabaseQueue(path: path, configuration: configuration)
    }

    /// Deletes a copy with its journal files; missing files are fine.
    static func remove(at path: String) throws {
        let manager = FileManager.default
        for suffix in ["", "-wal", "-shm", "-journal"] where manager.fileExists(atPath: path + suffix) {
            try manager.removeItem(atPath: path + suffix)
        }
    }

    /// Whether a copy exists at `path`.
    static func exists(at path: String) -> Bool {
        FileManager.default.fileExists(atPath: path)
    }
}
