import ArgumentParser
import BalancerAdmin
import Foundation

/// `ums-balancer status`: the nodes, their three axes and connections, and the update's progress.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the running balancer's nodes (mode, health, admin state, version, connections) and update."
    )

    @OptionGroup var options: AdminOptions

    @Flag(name: .long, help: "Print the admin API's JSON document instead of the table.")
    var json = false

    func run() async throws {
        try await runAdminCommand { () throws(AdminClientError) in
            let client = try AdminClient(options)
            if json {
                let data = try await client.send(.get, "/status")
                print(String(decoding: data, as: UTF8.self))
            } else {
                print(Self.render(try await client.send(.get, "/status", as: StatusDocument.self)), terminator: "")
            }
        }
    }

    /// The table, then one line for the update and one for the configuration.
    static func render(_ status: StatusDocument) -> String {
        let notes = status.nodes.map { node in
            [
                node.modeOverride.map { "mode overridden to \($0)" },
                node.reconnectDrain ? "drained for its reconnect" : nil,
                node.installDrain ? "drained for its install" : nil,
            ].compactMap { $0 }.joined(separator: "; ")
        }
        var rows = [["NODE", "MODE", "HEALTH", "ADMIN", "VERSION", "CONNECTIONS"]]
        for node in status.nodes {
            rows.append([node.id, node.mode, node.health, node.admin, node.version ?? "-", "\(node.connections)"])
        }
        if notes.contains(where: { !$0.isEmpty }) {
            rows[0].append("NOTE")
            for (index, note) in notes.enumerated() { rows[index + 1].append(note) }
        }
        var text = table(rows)
        let update = status.update
        text += "update: \(update.state) - \(update.summary)\n"
        if !update.flags.isEmpty {
            text += "flagged: \(update.flags.joined(separator: ", "))\n"
        }
        if let drive = update.drive { text += DriveText.statusLines(drive) }
        if let last = update.lastRun {
            let by = last.by.map { " by \($0)" } ?? ""
            text += "last run: \(last.outcome) at \(last.at.formatted(.iso8601))\(by) - \(last.reason)\n"
        }
        let reload = status.config.lastReload
        let at = reload.at.formatted(.iso8601)
        text +=
            "config: generation \(status.config.generation), "
            + (reload.ok ? "last reload ok at \(at)\n" : "last reload REJECTED at \(at): \(reload.error ?? "")\n")
        return text
    }

    /// Left-aligned columns two spaces apart, no trailing spaces.
    static func table(_ rows: [[String]]) -> String {
        let columns = rows.map(\.count).max() ?? 0
        let widths = (0..<columns).map { column in rows.map { column < $0.count ? $0[column].count : 0 }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column] + 2, withPad: " ", startingAt: 0)
            }.joined()
        }.joined(separator: "\n") + "\n"
    }
}
