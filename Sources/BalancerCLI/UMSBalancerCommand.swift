import ArgumentParser
import BalancerBuildInfo
import BalancerConfigFile

/// `ums-balancer`: the daemon and its operator commands.
public struct UMSBalancerCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "ums-balancer",
        abstract: "A TCP load balancer for IGEL UMS High-Availability clusters that knows about rolling updates.",
        version: versionText,
        subcommands: [
            RunCommand.self, CheckConfigCommand.self, StatusCommand.self, HealthCommand.self, ReloadCommand.self,
            NodeCommand.self,
            UpdateCommand.self, DemoCommand.self,
        ]
    )

    public init() {}
}

/// The configuration file option shared by every command.
struct ConfigOption: ParsableArguments {
    @Option(
        name: .customLong("config"),
        help:
            "The configuration file (default: \(ConfigLocation.installed) when it exists, else \(ConfigLocation.checkout))."
    )
    var explicitConfig: String?

    /// The file the command reads.
    var config: String { ConfigLocation.path(explicitConfig) ?? ConfigLocation.checkout }

    /// The file, checked; when no `--config` was given and no default exists, the error names both places.
    func check() throws(ConfigErrors) -> ConfigFile.Checked {
        guard ConfigLocation.path(explicitConfig) != nil else { throw ConfigLocation.missing() }
        return try ConfigFile.check(path: config)
    }
}
