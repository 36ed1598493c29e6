import Foundation

/// A state database's files made unwritable at page level with `chattr +i`, as a failing or full
/// disk does to a process that has them open: root's permissions do not help against it.
public enum StateFiles {
    /// Makes the database at `path` and its companion files immutable; returns the files.
    public static func makeImmutable(_ path: String) async throws -> [String] {
        let files = ["", "-wal", "-shm", "-journal"].map { path + $0 }
            .filter { FileManager.default.fileExists(atPath: $0) }
        try await chattr("+i", files)
        return files
    }

    /// Makes `files` writable again.
    public static func makeMutable(_ files: [String]) async throws {
        try await chattr("-i", files)
    }

    /// Makes `files` writable again (if still immutable) and removes `directory`; for `defer`.
    public static func release(_ files: [String], _ directory: TemporaryDirectory) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/chattr")
        process.arguments = ["-i"] + files
        try? process.run()
        process.waitUntilExit()
        directory.remove()
    }

    private static func chattr(_ flag: String, _ files: [String]) async throws {
        let result = try await ProcessHarness.runProgram(at: "/usr/bin/chattr", [flag] + files)
        guard result.status == 0 else {
            throw TestKitError(
                "chattr \(flag) failed (\(result.output)): the state-fault tests need root and a file system with"
                    + " immutable files (ext4, xfs, btrfs) under \(NSTemporaryDirectory())")
        }
    }
}
