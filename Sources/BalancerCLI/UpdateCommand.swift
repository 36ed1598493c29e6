import ArgumentParser
import BalancerAdmin

/// `ums-balancer update retry-reconnect`: operator actions on the update run.
struct UpdateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update",
        abstract: "Act on the rolling update the balancer tracks.",
        subcommands: [RetryReconnect.self]
    )

    /// Re-arms the reconnect of a stalled update run.
    struct RetryReconnect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "retry-reconnect",
            abstract: "Retry the reconnect of the nodes a stalled update run is waiting for."
        )

        @OptionGroup var options: AdminOptions

        func run() async throws {
            try await runAdminCommand { () throws(AdminClientError) in
                let client = try AdminClient(options)
                let update = try await client.send(.post, "/update/retry-reconnect", as: StatusDocument.Update.self)
                print("reconnect retried: \(update.state) - \(update.summary)")
            }
        }
    }
}
