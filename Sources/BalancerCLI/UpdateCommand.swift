import ArgumentParser
import BalancerAdmin

/// `ums-balancer update retry-reconnect|end`: operator actions on the update run.
struct UpdateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update",
        abstract: "Act on the rolling update the balancer tracks.",
        subcommands: [RetryReconnect.self, End.self]
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

    /// Closes the update run by hand.
    struct End: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "end",
            abstract: "End the update run by hand (refused while a node is installing or reconnecting).",
            discussion: """
                The run returns to idle, the balancer's reconnect drains are released and the freeze \
                console policy stops applying; the journal records who ended it. The cluster as it stands \
                then starts no new run by itself: a node that installs, enters update mode or reports a \
                new version does.
                """
        )

        @OptionGroup var options: AdminOptions

        func run() async throws {
            try await runAdminCommand { () throws(AdminClientError) in
                let client = try AdminClient(options)
                let update = try await client.send(.post, "/update/end", as: StatusDocument.Update.self)
                print("update run ended: \(update.state) - \(update.summary)")
            }
        }
    }
}
