import ArgumentParser
import BalancerConfigFile

/// `ums-balancer check-config`: validates a configuration file without running anything.
struct CheckConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Check a configuration file: exit 0 if valid, else print one FILE:LINE:COL line per problem."
    )

    @OptionGroup var options: ConfigOption

    func run() throws {
        do {
            let checked = try options.check()
            // Warnings leave the exit status 0: the file is valid, but may not do what is wanted.
            for warning in checked.warnings { printError(warning.description) }
            let configuration = checked.configuration
            print(
                "\(options.config): OK (\(configuration.listeners.count) listeners, \(configuration.nodes.count) nodes"
                    + (checked.warnings.isEmpty ? ")" : ", \(checked.warnings.count) warnings)"))
        } catch {
            printError(error.description)
            throw ExitCode(1)
        }
    }
}
