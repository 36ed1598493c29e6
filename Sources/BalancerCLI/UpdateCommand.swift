import ArgumentParser
import BalancerAdmin
import Foundation

/// `ums-balancer update plan|start|pause|resume|abort|retry-reconnect|end`: the pre-flight report, the
/// driven update, and operator actions on the update run.
struct UpdateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update",
        abstract: "Plan, drive or act on the rolling update the balancer tracks.",
        subcommands: [Plan.self, Start.self, Pause.self, Resume.self, Abort.self, RetryReconnect.self, End.self]
    )

    /// The pre-flight report: exit 0 when ready, 1 when a check fails.
    struct Plan: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "plan",
            abstract: "Check the cluster before a rolling update: exit 0 when ready, 1 when a check fails.",
            discussion: """
                Every configured server running (an orphan, registered but not running, never reconnects), \
                in normal mode and on one version; clocks within a minute of the balancer; capacity with the \
                busiest server out (per-node max_connections); the order, the console policy and the reconnect.
                """
        )

        @OptionGroup var options: AdminOptions

        func run() async throws {
            var ready = false
            try await runAdminCommand { () throws(AdminClientError) in
                let client = try AdminClient(options)
                let plan = try await client.send(.get, "/update/plan", as: PlanDocument.self)
                let width = plan.checks.map(\.name.count).max() ?? 0
                for check in plan.checks {
                    let name = check.name.padding(toLength: width, withPad: " ", startingAt: 0)
                    print("\(check.result.padding(toLength: 4, withPad: " ", startingAt: 0))  \(name)  \(check.detail)")
                }
                print(
                    plan.ready ? "ready: \(plan.order.joined(separator: " -> "))" : "not ready: fix what failed first")
                ready = plan.ready
            }
            if !ready { throw ExitCode(1) }
        }
    }

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
