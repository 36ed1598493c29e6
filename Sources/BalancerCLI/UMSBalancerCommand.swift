import ArgumentParser

/// `ums-balancer`: the daemon and its operator commands.
public struct UMSBalancerCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "ums-balancer",
        abstract: "A TCP load balancer for IGEL UMS High-Availability clusters that knows about rolling updates.",
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
    @Option(name: .long, help: "The configuration file.")
    var config = "config/ums-balancer.yaml"
}
