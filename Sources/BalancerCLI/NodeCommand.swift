import ArgumentParser
import BalancerAdmin
import Foundation

/// `ums-balancer node drain|resume|maintenance NODE`: the operator's admin state of one node.
struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract:
            "Set a node's admin state: drain (no new connections), resume (active), maintenance (out of the cluster)."
    )

    /// What to do with the node; each is one admin API route.
    enum Action: String, CaseIterable, ExpressibleByArgument {
        case drain, resume, maintenance
    }

    @Argument(help: "What to do with the node.")
    var action: Action

    @Argument(help: "The node's id as configured (nodes[].id).")
    var node: String

    @OptionGroup var options: AdminOptions

    func run() async throws {
        try await runAdminCommand { () throws(AdminClientError) in
            let client = try AdminClient(options)
            let path =
                "/nodes/\(node.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? node)/\(action.rawValue)"
            let result = try await client.send(.post, path, as: StatusDocument.Node.self)
            print(
                "\(result.id): admin state \(result.admin) (mode \(result.mode), health \(result.health), "
                    + "\(result.connections) connections)")
        }
    }
}
