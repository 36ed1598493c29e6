import Foundation

/// A program of this package run as a real process, its output captured to a file, stopped by PID.
public final class ProcessHarness: @unchecked Sendable {
    // @unchecked: `process` is only touched through Foundation's thread-safe Process API.
    public let process: Process
    public let outputFile: URL

    /// The folder holding this package's built executables (next to the test bundle).
    public static var productsDirectory: URL {
        if let override = ProcessInfo.processInfo.environment["UMS_BALANCER_PRODUCTS"] {
            return URL(fileURLWithPath: override)
        }
        var url = Bundle.main.bundleURL
        while url.pathExtension == "xctest" || url.lastPathComponent == "Contents" || url.lastPathComponent == "MacOS" {
            url.deleteLastPathComponent()
        }
        return url
    }

    /// Starts `executable` (a product of this package) with `arguments`; stdout and stderr go to one file.
    public convenience init(_ executable: String, _ arguments: [String], workingDirectory: URL? = nil) throws {
        let binary = Self.productsDirectory.appendingPathComponent(executable)
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw TestKitError("\(binary.path) is not built: run `swift build` first")
        }
        try self.init(path: binary, arguments, workingDirectory: workingDirectory)
    }

    /// Starts the program at `path` with `arguments`; stdout and stderr go to one file.
    public init(path binary: URL, _ arguments: [String], workingDirectory: URL? = nil) throws {
        outputFile = FileManager.default.temporaryDirectory.appendingPathComponent("ums-\(UUID().uuidString).log")
        FileManager.default.createFile(atPath: outputFile.path, contents: nil)
        let handle = try FileHandle(forWritingTo: outputFile)
        process = Process()
        process.executableURL = binary
        process.arguments = arguments
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        if let workingDirectory { process.currentDirectoryURL = workingDirectory }
        try process.run()
    }

    /// Everything the process printed so far.
    public var output: String {
        (try? String(contentsOf: outputFile, encoding: .utf8)) ?? ""
    }

    /// Waits until the output contains `text`; throws with the output if it does not in time.
    public func waitForOutput(_ text: String, timeout: Duration = .seconds(20)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !output.contains(text) {
            guard process.isRunning else { throw TestKitError("process exited before printing '\(text)':\n\(output)") }
            guard ContinuousClock.now < deadline else {
                throw TestKitError("no '\(text)' within \(timeout):\n\(output)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Sends `signal` to the process.
    public func send(_ signal: Int32) {
        Foundation.kill(process.processIdentifier, signal)
    }

    /// Waits for the process to exit and returns its status; kills it if it takes longer than `timeout`.
    @discardableResult
    public func waitForExit(timeout: Duration = .seconds(30)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            guard ContinuousClock.now < deadline else {
                Foundation.kill(process.processIdentifier, SIGKILL)
                throw TestKitError("process did not exit within \(timeout):\n\(output)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return process.terminationStatus
    }

    /// Stops the process by PID if it still runs (for cleanup paths).
    public func kill() {
        if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
    }

    /// Runs `executable` to completion and returns its exit status and output.
    public static func run(_ executable: String, _ arguments: [String]) async throws -> (status: Int32, output: String)
    {
        let harness = try ProcessHarness(executable, arguments)
        let status = try await harness.waitForExit()
        return (status, harness.output)
    }

    /// Runs the program at `executable` (an absolute path) to completion.
    public static func runProgram(at executable: String, _ arguments: [String]) async throws -> (
        status: Int32, output: String
    ) {
        let harness = try ProcessHarness(path: URL(fileURLWithPath: executable), arguments)
        let status = try await harness.waitForExit()
        return (status, harness.output)
    }
}

/// A temporary folder for one test, removed by `remove()`.
public struct TemporaryDirectory: Sendable {
    public let url: URL

    public init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("ums-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    /// Writes `text` to `name` inside the folder and returns its path.
    public func write(_ name: String, _ text: String) throws -> String {
        let file = url.appendingPathComponent(name)
        try text.write(to: file, atomically: true, encoding: .utf8)
        return file.path
    }

    public func remove() {
        try? FileManager.default.removeItem(at: url)
    }
}
