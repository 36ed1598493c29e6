import ArgumentParser
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `ums-balancer reload`: makes a running balancer reload its configuration file.
struct ReloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Make the running balancer re-read its configuration (SIGHUP to the PID in --pid-file)."
    )

    @Option(name: .long, help: "The pid file the balancer was started with (`run --pid-file`).")
    var pidFile: String

    func run() throws {
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8) else {
            printError("cannot read \(pidFile): is the balancer running with --pid-file \(pidFile)?")
            throw ExitCode(1)
        }
        guard let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1 else {
            printError("\(pidFile) does not hold a process ID")
            throw ExitCode(1)
        }
        guard kill(pid, SIGHUP) == 0 else {
            printError("cannot signal process \(pid) from \(pidFile): \(String(cString: strerror(errno)))")
            throw ExitCode(1)
        }
        print("reload requested (SIGHUP to \(pid)); the balancer logs the result")
    }
}
