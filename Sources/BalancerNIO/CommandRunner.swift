import BalancerCore
import Subprocess

#if canImport(System)
import System
#else
import SystemPackage
#endif

/// Runs operator commands (status probes, reconnect actions) with a hard time limit: a command
/// that hangs is terminated, then killed, and never stalls anything but its own caller.
enum CommandRunner {
    /// Runs `words` and returns its standard output if it exits 0 within `timeout`, else why not.
    static func run(_ words: [String], timeout: Duration, outputLimit: Int) async -> Result<[UInt8], CommandError> {
        guard let program = words.first else { return .failure(.init("empty command")) }
        do {
            return try await withThrowingTaskGroup(of: Result<[UInt8], CommandError>.self) { tasks in
                tasks.addTask {
                    var options = PlatformOptions()
                    options.teardownSequence = [.gracefulShutDown(allowedDurationToNextStep: .milliseconds(500))]
                    let executable: Executable = program.contains("/") ? .path(FilePath(program)) : .name(program)
                    let result = try await Subprocess.run(
                        executable,
                        arguments: Arguments(Array(words.dropFirst())),
                        platformOptions: options,
                        input: .none,
                        output: .bytes(limit: outputLimit),
                        error: .discarded
                    )
                    guard case .exited(0) = result.terminationStatus else {
                        return .failure(.init("\(program) ended with \(result.terminationStatus)"))
                    }
                    return .success(result.standardOutput)
                }
                tasks.addTask {
                    try await Task.sleep(for: timeout)
                    return .failure(.init("\(program) timed out after \(DurationText.format(timeout))"))
                }
                let first = try await tasks.next()!
                tasks.cancelAll()
                return first
            }
        } catch {
            return .failure(.init("\(program) failed: \(error)"))
        }
    }

    /// Why a command did not deliver.
    struct CommandError: Error, CustomStringConvertible {
        var description: String

        init(_ description: String) {
            self.description = description
        }
    }
}
