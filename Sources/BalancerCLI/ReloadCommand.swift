import ArgumentParser
import BalancerAdmin
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `ums-balancer reload`: makes a running balancer reload its configuration file, through the admin
/// API (the config's `admin` section, or `--admin`), or with SIGHUP to the PID in `--pid-file`.
struct ReloadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Make the running balancer re-read its configuration (admin API, or SIGHUP with --pid-file)."
    )

    @OptionGroup var options: AdminOptions

    @Option(name: .long, help: "Signal the PID in this file (`run --pid-file`) instead of calling the admin API.")
    var pidFile: String?

    func run() async throws {
        if let pidFile {
            try signal(pidFile)
            return
        }
        try await runAdminCommand { () throws(AdminClientError) in
            let client = try AdminClient(options)
            let config = try await client.send(.post, "/reload", as: StatusDocument.Config.self)
            print("configuration reloaded: generation \(config.generation)")
        }
    }

    private func signal(_ pidFile: String) throws {
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
