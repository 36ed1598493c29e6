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
            let configuration = try ConfigFile.load(path: options.config)
            print(
                "\(options.config): OK (\(configuration.listeners.count) listeners, \(configuration.nodes.count) nodes)"
            )
        } catch {
            printError(error.description)
            throw ExitCode(1)
        }
    }
}
