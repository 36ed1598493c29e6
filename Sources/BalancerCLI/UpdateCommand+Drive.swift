import ArgumentParser
import BalancerAdmin
import Foundation

/// `ums-balancer update start|pause|resume|abort`: the update the balancer drives.
extension UpdateCommand {
    /// Starts driving the update to a version.
    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "start",
            abstract: "Let the balancer drive the update to a version, server by server, in the plan's order.",
            discussion: """
                Each server's install action is called in turn; the next starts once the server is back in \
                update mode and has served update.canary_connections device connections through the balancer \
                (the canary gate). The last renews the productive schema; then the update-mode servers \
                reconnect, reconnect.max_unavailable at a time. Refused (exit 1) when the update plan is not \
                ready, unless --force.
                """
        )

        @OptionGroup var options: AdminOptions

        @Option(help: "The version to install, e.g. 12.07.100.")
        var version: String

        @Flag(help: "Start although the update plan has a failing check (a missing install action still refuses).")
        var force = false

        func run() async throws {
            try await runAdminCommand { () throws(AdminClientError) in
                let client = try AdminClient(options)
                let body = String(
                    decoding: (try? JSONSerialization.data(withJSONObject: ["version": version, "force": force]))
                        ?? Data(),
                    as: UTF8.self)
                let drive = try await client.send(.post, "/update/start", json: body, as: DriveDocument.self)
                print(DriveText.render(drive), terminator: "")
            }
        }
    }

    /// No new step starts until `resume`.
    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "pause",
            abstract: "Pause the driven update: no new step starts (an install under way goes on).")

        @OptionGroup var options: AdminOptions

        func run() async throws { try await request("/update/pause", options) }
    }

    /// Goes on after a pause, or retries a stalled step.
    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "resume",
            abstract: "Resume a paused driven update, or retry the step (or reconnect) that stalled.")

        @OptionGroup var options: AdminOptions

        func run() async throws { try await request("/update/resume", options) }
    }

    /// Stops the drive; the nodes stay as they are.
    struct Abort: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "abort",
            abstract:
                "Stop driving the update: no further step, the servers stay as they are, the run is still tracked.")

        @OptionGroup var options: AdminOptions

        func run() async throws { try await request("/update/abort", options) }
    }

    static func request(_ path: String, _ options: AdminOptions) async throws {
        try await runAdminCommand { () throws(AdminClientError) in
            let client = try AdminClient(options)
            print(DriveText.render(try await client.send(.post, path, as: DriveDocument.self)), terminator: "")
        }
    }
}

/// A driven update for people: a headline, then one line per step (done, now, next) with the time
/// each took, and the reconnect.
enum DriveText {
    static func render(_ drive: DriveDocument) -> String {
        var head =
            "drive: \(drive.state) to \(drive.targetVersion), started by \(drive.startedBy)"
            + " at \(drive.startedAt.formatted(.iso8601))"
        if drive.forced { head += " (forced)" }
        if let left = drive.estimatedRemainingSeconds { head += "; about \(duration(left)) left" }
        if let reason = drive.reason, drive.state != "running" { head += " - \(reason)" }
        var rows: [[String]] = []
        for step in drive.steps {
            var what: String
            switch step.phase {
            case "done": what = "done"
            case "pending": what = step.role == "last" ? "last: renews the productive schema" : "update mode"
            case "canary": what = "canary: \(step.canaryServed) of \(drive.canaryConnections) device connections"
            default: what = step.phase
            }
            if step.attempts > 1 { what += " (install called \(step.attempts) times)" }
            let time = step.seconds.map { step.position == "done" ? duration($0) : "\(duration($0)) so far" } ?? ""
            var row = [step.position, step.node, what, time]
            if let stalled = step.stalled { row.append("STALLED: \(stalled)") }
            rows.append(row)
        }
        let reconnect = drive.reconnect
        rows.append([
            reconnect.position, "reconnect", "update-mode servers back to the productive database",
            reconnect.seconds.map { reconnect.position == "done" ? duration($0) : "\(duration($0)) so far" } ?? "",
        ])
        // Rows without a time end in padding: trimmed, so no line ends in spaces.
        let table = StatusCommand.table(rows).split(separator: "\n").map { line in
            "  " + line.replacingOccurrences(of: #"\s+$"#, with: "", options: .regularExpression)
        }.joined(separator: "\n")
        return head + "\n" + table + "\n"
    }

    /// For `ums-balancer status`: the whole drive while it is under way, one line once it ended.
    static func statusLines(_ drive: DriveDocument) -> String {
        guard ["completed", "aborted"].contains(drive.state) else { return render(drive) }
        let at = drive.finishedAt.map { " at \($0.formatted(.iso8601))" } ?? ""
        return "last drive: \(drive.state) to \(drive.targetVersion)\(at) - \(drive.reason ?? "")\n"
    }

    /// "8.2s", "3m 5s".
    static func duration(_ seconds: Double) -> String {
        seconds < 120 ? String(format: "%.1fs", seconds) : "\(Int(seconds) / 60)m \(Int(seconds) % 60)s"
    }
}
