import BalancerCore
import Prometheus

/// Gauges computed from a status snapshot at each scrape, in a registry of their own made for that
/// scrape: a node removed by a reload leaves no stale series behind, and one-hot gauges such as
/// `ums_balancer_node_mode{node,mode}` have exactly one 1 per node.
struct SnapshotMetrics {
    private let registry = PrometheusCollectorRegistry()

    /// The exposition text of `status`'s gauges.
    static func render(_ status: StatusDocument) -> [UInt8] {
        let metrics = SnapshotMetrics()
        metrics.record(status)
        return metrics.registry.emitToBuffer()
    }

    private func record(_ status: StatusDocument) {
        for node in status.nodes {
            oneHot(
                "node_mode", "The mode each node is in (reported, or the operator's override).",
                node: node.id, label: "mode", value: node.mode, among: NodeMode.allCases.map(\.rawValue))
            oneHot(
                "node_health", "Each node's health as the probes see it.",
                node: node.id, label: "health", value: node.health, among: NodeHealth.allCases.map(\.rawValue))
            oneHot(
                "node_admin", "Each node's administrative state, set by the operator.",
                node: node.id, label: "admin", value: node.admin, among: AdminState.allCases.map(\.rawValue))
            gauge("node_connections", "Connections counted against each node.", [("node", node.id)])
                .set(to: Double(node.connections))
            gauge("node_mode_overridden", "1 while an operator overrides the node's mode.", [("node", node.id)])
                .set(to: node.modeOverride == nil ? 0 : 1)
            gauge(
                "node_reconnect_drain", "1 while the balancer drains the node for its reconnect.", [("node", node.id)]
            )
            .set(to: node.reconnectDrain ? 1 : 0)
            gauge(
                "node_install_drain", "1 while a driven update drains the node for its install.", [("node", node.id)]
            )
            .set(to: node.installDrain ? 1 : 0)
        }
        let update = status.update
        gauge("update_servers_updated", "Servers on the target version (the n of \"n of m servers updated\").")
            .set(to: Double(update.updated))
        gauge("update_servers_taking_part", "Servers taking part in the update: configured, not in maintenance.")
            .set(to: Double(update.total))
        for state in UpdateRun.State.allCases {
            gauge(
                "update_state", "The update run's state, one-hot; stalled needs an operator.",
                [("state", state.rawValue)]
            )
            .set(to: state.rawValue == update.state ? 1 : 0)
        }
        // One gauge per flag, every series always present, so an alert reads `== 1`.
        gauge("update_overdue", "1 while the update run is older than update.max_duration.")
            .set(to: update.flags.contains(UpdateFlag.overdue.description) ? 1 : 0)
        for node in status.nodes {
            gauge(
                "update_install_overdue", "1 while the node has been installing longer than update.install_timeout.",
                [("node", node.id)]
            )
            .set(to: update.flags.contains(UpdateFlag.installOverdue(node.id).description) ? 1 : 0)
        }
        for state in UpdateDrive.State.allCases {
            gauge(
                "update_drive_state", "The driven update's state, one-hot (all 0 before the first update start).",
                [("state", state.rawValue)]
            )
            .set(to: state.rawValue == update.drive?.state ? 1 : 0)
        }
        gauge("update_drive_stalled", "1 while a step of the driven update is stalled (also while paused).")
            .set(to: update.flags.contains { $0.hasPrefix("drive-stalled:") } ? 1 : 0)
        gauge("config_generation", "Configuration generation: 1 at start, +1 per accepted reload.")
            .set(to: Double(status.config.generation))
        gauge("config_last_reload_ok", "1 if the last reload (or the start) was accepted, 0 if it was rejected.")
            .set(to: status.config.lastReload.ok ? 1 : 0)
        gauge("config_last_reload_timestamp_seconds", "When the last reload (or the start) happened, Unix time.")
            .set(to: status.config.lastReload.at.timeIntervalSince1970)
        if let state = status.state {
            gauge("state_ok", "1 while the state database takes writes, 0 while its writes fail.")
                .set(to: state.ok ? 1 : 0)
            gauge("journal_unwritten_events", "Journal events waiting for the state database.")
                .set(to: Double(state.unwrittenEvents))
        }
    }

    private func oneHot(
        _ name: String, _ help: String, node: String, label: String, value: String, among values: [String]
    ) {
        for candidate in values {
            gauge(name, help, [("node", node), (label, candidate)]).set(to: candidate == value ? 1 : 0)
        }
    }

    private func gauge(_ name: String, _ help: String, _ labels: [(String, String)] = []) -> Gauge {
        registry.makeGauge(
            descriptor: MetricNameDescriptor(metricName: "ums_balancer_\(name)", unitName: "", helpText: help),
            labels: labels)
    }
}
