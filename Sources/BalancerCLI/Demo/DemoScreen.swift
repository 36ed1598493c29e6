import BalancerCore
import BalancerStore
import Foundation
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What the demo ended with.
struct DemoSummary {
    var elapsed: Duration
    var outcome: String
    var run: UpdateRun
    var traffic: DemoTraffic.Counts
    var webSocketDevices: Int
    var webSockets: DemoWebSocketDevices.Counts
    var nodes: [NodeStatus]
    var loginsInUpdateMode: Int
    var events: [JournalEvent]
    var started: Date
}

/// The demo's terminal output: a live status line (redrawn on a terminal, repeated every few
/// seconds otherwise), the story as it happens, and the closing summary.
final class DemoScreen: Sendable {
    private let isTerminal = isatty(STDOUT_FILENO) == 1
    private let state = NIOLockedValueBox<(line: String, lastPrinted: ContinuousClock.Instant?)>(("", nil))

    func say(_ text: String) {
        write(text + "\n")
    }

    /// A line of the story, kept above the live status line.
    func event(_ text: String) {
        state.withLockedValue { state in
            if isTerminal {
                Self.output("\r\u{1B}[K  \(text)\n\(state.line)")
            } else {
                Self.output("  \(text)\n")
            }
        }
    }

    /// The live status line.
    func status(
        elapsed: Duration, nodes: [(status: NodeStatus, connections: Int)], run: UpdateRun, traffic: DemoTraffic.Counts,
        webSockets: DemoWebSocketDevices.Counts
    ) {
        let servers = nodes.map { node in
            let health = node.status.health == .up ? "" : " DOWN"
            let drain = node.status.reconnectDrain || node.status.installDrain ? " drained" : ""
            return "\(node.status.id) \(node.status.mode) \(node.status.version ?? "?")\(health)\(drain)"
        }.joined(separator: " | ")
        let update =
            run.state == .idle
            ? "no update yet" : "\(run.state.rawValue): \(run.updated) of \(run.total) servers updated"
        // Where the WebSockets are now, so they can be seen moving off a server that goes down.
        let onNodes = webSockets.openByNode.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
        let line = String(
            format: "[%5.1fs] %@ || %@ || devices %d ok %d failed || websockets %d open%@ %d reconnects %d echoed "
                + "|| consoles %d in %d refused",
            elapsed.seconds, servers, update, traffic.deviceServed, traffic.deviceFailed, webSockets.open,
            onNodes.isEmpty ? "" : " (\(onNodes.joined(separator: ", ")))", webSockets.reconnects,
            webSockets.echoed, traffic.loginsAllowed, traffic.loginsRefused)
        state.withLockedValue { state in
            state.line = line
            if isTerminal {
                Self.output("\r\u{1B}[K" + line)
            } else if state.lastPrinted.map({ ContinuousClock.now - $0 >= .seconds(2) }) ?? true {
                state.lastPrinted = .now
                Self.output(line + "\n")
            }
        }
    }

    /// Tells the story of one journal event; nil for events not worth a line.
    static func narrate(_ event: JournalEvent) -> String? {
        let node = event.node.map { "\($0): " } ?? ""
        switch event.kind {
        case .run: return "update run \(event.message)"
        case .target: return "balancer: \(event.message)"
        case .flag: return "balancer: update run \(event.message)"
        case .mode: return "\(node)reports \(event.message)"
        case .health: return "\(node)health \(event.message)"
        case .drain, .reconnect, .release, .admin: return "balancer: \(node)\(event.message)"
        case .drive: return "drive: \(node)\(event.message)"
        case .refusal, .reload, .balancer: return nil
        }
    }

    /// Prints the summary; returns whether the demo succeeded.
    func summary(_ summary: DemoSummary) -> Bool {
        let traffic = summary.traffic
        let reconnect =
            summary.run.reconnectStartedAt.map { at in
                let offset = at.timeIntervalSince(summary.started)
                let nodes = summary.run.reconnects.keys.sorted().joined(separator: ", ")
                return String(
                    format: "triggered %.1f s into the demo for %@", offset, nodes.isEmpty ? "no server" : nodes)
            } ?? "not triggered"
        let byNode = traffic.servedByNode.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(
            separator: ", ")
        let webSockets = summary.webSockets
        // No WebSocket message lost for good: every message a device sent got its echo, possibly
        // after a reconnect and a resend; and WebSocket devices, if any, did connect.
        let webSocketsHeld = webSockets.lost == 0 && (summary.webSocketDevices == 0 || webSockets.connects > 0)
        let succeeded = traffic.deviceFailed == 0 && webSocketsHeld && summary.outcome == "completed"
        var lines = [
            "",
            String(format: "Summary after %.1f s", summary.elapsed.seconds),
            "  update          \(summary.run.state.rawValue): \(summary.run.targetVersion ?? "no new version"), "
                + "\(summary.run.updated) of \(summary.run.total) servers updated",
            "  reconnect       \(reconnect)",
            "  device requests \(traffic.deviceServed) served, \(traffic.deviceFailed) failed (\(byNode); "
                + "\(traffic.servedInUpdateMode) answered by servers in update mode from their local copy)",
            "  websockets      \(summary.webSocketDevices) devices: \(webSockets.connects) connects, "
                + "\(webSockets.reconnects) reconnects (\(webSockets.closedByServer) closed by a server going down, "
                + "\(webSockets.dropped) ended without one, as by the balancer's drain); \(webSockets.sent) messages sent, \(webSockets.echoed) "
                + "echoed, \(webSockets.lost) lost",
            "  console logins  \(traffic.loginsAllowed) allowed, \(traffic.loginsRefused) refused while no server could take "
                + "them safely; \(summary.loginsInUpdateMode) accepted by a server in update mode",
            "  servers         "
                + summary.nodes.map { "\($0.id) \($0.mode) \($0.version ?? "?") \($0.health)" }.joined(separator: " | "),
            "  journal         \(summary.events.count) events recorded",
        ]
        if summary.outcome != "completed" { lines.append("  problem         \(summary.outcome)") }
        for failure in traffic.failures.prefix(5) { lines.append("  failed request  \(failure)") }
        lines.append(
            succeeded
                ? "  result          OK: the cluster is on the new version, no device request failed and no "
                    + "WebSocket message was lost"
                : "  result          FAILED")
        let text = (isTerminal ? "\r\u{1B}[K" : "") + lines.joined(separator: "\n") + "\n"
        write(text)
        return succeeded
    }

    private func write(_ text: String) {
        state.withLockedValue { state in
            if isTerminal && !state.line.isEmpty {
                Self.output("\r\u{1B}[K" + text + state.line)
            } else {
                Self.output(text)
            }
        }
    }

    private static func output(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }
}
