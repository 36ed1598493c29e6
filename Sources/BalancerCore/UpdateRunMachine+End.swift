import Foundation

/// Ending a run by hand (`ums-balancer update end`).
extension UpdateRunMachine {
    /// Why a run cannot be ended by hand now.
    public enum EndRefusal: Error, Sendable, Hashable, CustomStringConvertible {
        /// No run is under way: `idle` (none recorded) or `completed` (it has ended already).
        case noRunUnderWay(UpdateRun.State)
        /// These nodes report `installing`: the run would start again the moment it ended.
        case installing([NodeID])
        /// These nodes report `reconnecting`, or a reconnect call to them is in flight.
        case reconnecting([NodeID])

        public var description: String {
            switch self {
            case .noRunUnderWay(.completed):
                "the update run is completed: it has ended already"
            case .noRunUnderWay(let state):
                "the update run is \(state.rawValue): there is no run to end"
            case .installing(let nodes):
                "\(nodes.joined(separator: ", ")) \(nodes.count == 1 ? "is" : "are") installing: "
                    + "end the run once the installer has finished (or put the node in maintenance)"
            case .reconnecting(let nodes):
                "\(nodes.joined(separator: ", ")) \(nodes.count == 1 ? "is" : "are") reconnecting: "
                    + "end the run once the node reports normal (or the reconnect has stalled)"
            }
        }
    }

    /// An operator closes the run: back to `idle`, drains released, `freeze` lifted, `lastRun`
    /// saying who. The cluster as it stands is acknowledged: it starts no new run by itself.
    public mutating func endRequested(
        by actor: String, nodes: [NodeStatus], now: Date
    ) throws(EndRefusal) -> [UpdateAction] {
        guard run.isRunning else { throw .noRunUnderWay(run.state) }
        let cluster = Cluster(nodes)
        let installing = cluster.counted.filter { $0.mode == .installing }.map(\.id)
        guard installing.isEmpty else { throw .installing(installing) }
        let calling = run.reconnects.filter { $0.value.phase == .calling }.keys
        let reconnecting = Set(cluster.counted.filter { $0.mode == .reconnecting }.map(\.id)).union(calling)
        guard reconnecting.isEmpty else { throw .reconnecting(reconnecting.sorted()) }

        let situation = AcknowledgedSituation(
            versions: Set(cluster.versions.map(\.description)),
            inUpdateMode: Set(cluster.counted.filter { $0.mode == .update }.map(\.id)))
        let left = cluster.isQuiet ? "" : "; left as it stands: \(Self.describe(cluster))"
        let actions = end(
            .endedByOperator, reason: "ended by \(actor)\(left)", now: now, by: actor,
            acknowledging: cluster.isQuiet ? nil : situation)
        return actions + updateFlags(now: now)
    }

    /// "ums1 update 12.07.100, ums2 normal 12.06.100".
    static func describe(_ cluster: Cluster) -> String {
        cluster.counted.map { "\($0.id) \($0.mode) \($0.version ?? "-")" }.joined(separator: ", ")
    }
}
