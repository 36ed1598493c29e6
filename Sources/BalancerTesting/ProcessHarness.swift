import Foundation
import NIOConcurrencyHelpers
import Subprocess

#if canImport(System)
import System
#else
import SystemPackage
#endif

/// A program of this package run as a real process, its output captured to a file, stopped by PID.
///
/// Started through swift-subprocess, which closes every descriptor but the standard three in the
/// child: Foundation's `Process` lets a child inherit the test process's sockets (NIO does not
/// open them close-on-exec), and a child holding a copy of a test's listening socket keeps that
/// port bound long after the test closed it.
public final class ProcessHarness: Sendable {
    /// The child's process ID.
    public let processIdentifier: pid_t
    public let outputFile: URL
    private let exitStatus: NIOLockedValueBox<Int32?>
    private let termination: Task<Void, Never>

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

    /// Starts `executable` (a product of this package) with `arguments`; stdout and stderr go to one
    /// file; `environment` is added to the test process's own.
    public convenience init(
        _ executable: String, _ arguments: [String], workingDirectory: URL? = nil, environment: [String: String] = [:]
    ) async throws {
        let binary = Self.productsDirectory.appendingPathComponent(executable)
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw TestKitError("\(binary.path) is not built: run `swift build` first")
        }
        try await self.init(path: binary, arguments, workingDirectory: workingDirectory, environment: environment)
    }

    /// Starts the program at `path` with `arguments`; stdout and stderr go to one file.
    public init(
        path binary: URL, _ arguments: [String], workingDirectory: URL? = nil, environment: [String: String] = [:]
    ) async throws {
        let overrides = [Environment.Key: String?](
            uniqueKeysWithValues: environment.map { (Environment.Key(stringLiteral: $0.key), $0.value) })
        let outputFile = FileManager.default.temporaryDirectory.appendingPathComponent("ums-\(UUID().uuidString).log")
        let output = try FileDescriptor.open(
            FilePath(outputFile.path), .writeOnly, options: [.create, .append, .closeOnExec],
            permissions: [.ownerReadWrite])
        let exitStatus = NIOLockedValueBox<Int32?>(nil)
        let started = AsyncStream<Result<pid_t, any Error>>.makeStream()
        termination = Task {
            do {
                let result = try await Subprocess.run(
                    .path(FilePath(binary.path)),
                    arguments: Arguments(arguments),
                    environment: .inherit.updating(overrides),
                    workingDirectory: workingDirectory.map { FilePath($0.path) },
                    input: .none,
                    output: .fileDescriptor(output, closeAfterSpawningProcess: true),
                    error: .combinedWithOutput
                ) { execution in
                    started.continuation.yield(.success(execution.processIdentifier.value))
                }
                let code: Int32 =
                    switch result.terminationStatus {
                    case .exited(let code): code
                    case .signaled(let signal): 128 + signal
                    }
                exitStatus.withLockedValue { $0 = code }
            } catch {
                started.continuation.yield(.failure(error))
                exitStatus.withLockedValue { $0 = -1 }
            }
            started.continuation.finish()
        }
        self.outputFile = outputFile
        self.exitStatus = exitStatus
        var iterator = started.stream.makeAsyncIterator()
        guard let first = await iterator.next() else { throw TestKitError("\(binary.path) did not start") }
        processIdentifier = try first.get()
    }

    /// Everything the process printed so far.
    public var output: String {
        (try? String(contentsOf: outputFile, encoding: .utf8)) ?? ""
    }

    /// The process has not exited yet.
    public var isRunning: Bool {
        exitStatus.withLockedValue { $0 == nil }
    }

    /// Waits until the output contains `text` (`count` times); throws with the output if it does not in time.
    public func waitForOutput(_ text: String, count: Int = 1, timeout: Duration = .seconds(20)) async throws {
        let deadline = ContinuousClock.now + timeout
        while output.components(separatedBy: text).count <= count {
            guard isRunning else { throw TestKitError("process exited before printing '\(text)':\n\(output)") }
            guard ContinuousClock.now < deadline else {
                throw TestKitError("no '\(text)' within \(timeout):\n\(output)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Sends `signal` to the process.
    public func send(_ signal: Int32) {
        if isRunning { Foundation.kill(processIdentifier, signal) }
    }

    /// Waits for the process to exit and returns its exit code (128 + the signal if a signal ended
    /// it); kills it if it takes longer than `timeout`.
    @discardableResult
    public func waitForExit(timeout: Duration = .seconds(30)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while isRunning {
            guard ContinuousClock.now < deadline else {
                kill()
                throw TestKitError("process did not exit within \(timeout):\n\(output)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        await termination.value
        return exitStatus.withLockedValue { $0 } ?? -1
    }

    /// Asks the process to stop (SIGTERM) and kills it if it is still there after `grace`.
    public func terminate(grace: Duration = .seconds(5)) async {
        send(SIGTERM)
        if (try? await waitForExit(timeout: grace)) == nil { kill() }
    }

    /// Stops the process by PID if it still runs (for cleanup paths).
    public func kill() {
        send(SIGKILL)
    }

    /// Runs `executable` to completion and returns its exit status and output.
    public static func run(_ executable: String, _ arguments: [String]) async throws -> (status: Int32, output: String)
    {
        let harness = try await ProcessHarness(executable, arguments)
        let status = try await harness.waitForExit()
        return (status, harness.output)
    }

    /// Runs the program at `executable` (an absolute path) to completion.
    public static func runProgram(at executable: String, _ arguments: [String]) async throws -> (
        status: Int32, output: String
    ) {
        let harness = try await ProcessHarness(path: URL(fileURLWithPath: executable), arguments)
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
