import Foundation

/// The nodes that count in a run (configured, not in maintenance) and the versions they report.
struct Cluster {
    let counted: [NodeStatus]
    let versions: [Version]

    init(_ nodes: [NodeStatus]) {
        counted = nodes.filter { $0.admin != .maintenance }
        versions = counted.compactMap { $0.version.flatMap(Version.init) }
    }

    /// Every counted node is normal on one version (a node that reports no version does not
    /// disagree): nothing about the cluster says an update is under way.
    var isQuiet: Bool {
        !counted.isEmpty && counted.allSatisfy { $0.mode == .normal } && Set(versions).count <= 1
    }

    var versionList: String {
        Set(versions.map(\.description)).sorted().joined(separator: ", ")
    }
}

/// How a run starts, follows the nodes, and ends.
extension UpdateRunMachine {
    // MARK: - Starting

    /// Why a new run starts now, or nil. From `idle`: a node reports installing or update, or the
    /// nodes report different versions (beyond what an operator acknowledged by ending the last
    /// run). From `completed`: a node reports installing or a version other than the target.
    func startReason(_ cluster: Cluster) -> String? {
        let installing = cluster.counted.first { $0.mode == .installing }
        switch run.state {
        case .idle:
            if let installing { return "\(installing.id) reports installing" }
            let acknowledged = run.acknowledged
            if let node = cluster.counted.first(where: {
                $0.mode == .update && !(acknowledged?.inUpdateMode.contains($0.id) ?? false)
            }) {
                return "\(node.id) reports update"
            }
            guard Set(cluster.versions).count > 1 else { return nil }
            guard let acknowledged else { return "servers report different versions (\(cluster.versionList))" }
            let known = acknowledged.versions.compactMap(Version.init)
            let fresh = Set(cluster.versions.filter { !known.contains($0) }.map(\.description)).sorted()
            guard !fresh.isEmpty else { return nil }
            return "servers report \(fresh.joined(separator: ", ")), not seen when the last run was ended"
        case .completed:
            if let installing { return "\(installing.id) reports installing" }
            let target = run.targetVersion.flatMap(Version.init)
            guard cluster.versions.contains(where: { $0 != target }) else { return nil }
            return "servers report different versions (\(cluster.versionList))"
        case .inProgress, .reconnecting, .stalled:
            return nil
        }
    }

    mutating func start(_ cluster: Cluster, reason: String, now: Date) -> [UpdateAction] {
        let previous = run.state
        let starting = previous == .completed ? run.targetVersion : cluster.versions.min()?.description
        var actions = releaseAll()
        run = freshRun()
        run.state = .inProgress
        run.startingVersion = starting
        run.startedAt = now
        actions.append(.stateChanged(from: previous, to: .inProgress, reason: reason))
        return actions
    }

    /// A run with nothing recorded, keeping what outlives a run: how the last one ended, and the
    /// flags raised so far (so that clearing them is said).
    func freshRun() -> UpdateRun {
        var fresh = UpdateRun()
        fresh.lastRun = run.lastRun
        fresh.flags = run.flags
        return fresh
    }

    /// Since when each counted node reports installing; `unknown` (a failed probe) keeps the clock.
    mutating func trackInstalling(_ cluster: Cluster, now: Date) {
        guard run.isRunning else {
            run.installingSince = [:]
            return
        }
        var since: [NodeID: Date] = [:]
        for node in cluster.counted {
            switch node.mode {
            case .installing: since[node.id] = run.installingSince[node.id] ?? now
            case .unknown: since[node.id] = run.installingSince[node.id]
            case .normal, .update, .reconnecting: break
            }
        }
        run.installingSince = since
    }

    // MARK: - Following

    /// Target, counts, the final node, the reconnect's progress, and the ends.
    mutating func follow(_ cluster: Cluster, now: Date) -> [UpdateAction] {
        var actions: [UpdateAction] = []
        observedUnavailable = Set(
            cluster.counted.filter { $0.mode == .reconnecting || $0.health == .down }.map(\.id))
        if let highest = cluster.versions.max(), Self.isHigher(highest, than: run.startingVersion),
            Self.isHigher(highest, than: run.targetVersion)
        {
            run.targetVersion = highest.description
            actions.append(.targetChanged(highest.description))
            if run.state == .reconnecting || run.state == .stalled {
                actions += releaseAll()
                actions.append(transition(to: .inProgress, reason: "a newer version \(highest) appeared"))
            }
        }
        let target = run.targetVersion.flatMap(Version.init)
        let onTarget = { (node: NodeStatus) in target != nil && node.version.flatMap(Version.init) == target }
        let counted = cluster.counted
        run.total = counted.count
        run.updated = counted.filter { onTarget($0) && [.normal, .update, .reconnecting].contains($0.mode) }.count
        let everyNodeNormalOnTarget = !counted.isEmpty && counted.allSatisfy { $0.mode == .normal && onTarget($0) }

        switch run.state {
        case .inProgress:
            let finalNodeCompleted =
                !counted.isEmpty
                && counted.allSatisfy { onTarget($0) && [.normal, .update, .reconnecting].contains($0.mode) }
                && counted.contains { $0.mode == .normal }
            if everyNodeNormalOnTarget {
                actions += complete(now: now)
            } else if finalNodeCompleted {
                actions += beginReconnect(counted.filter { $0.mode != .normal }.map(\.id), now: now)
            } else if let ending = quietEnding(cluster) {
                actions += end(ending.outcome, reason: ending.reason, now: now)
            }
        case .reconnecting, .stalled:
            for node in counted where run.reconnects[node.id].map({ $0.phase != .done }) == true {
                if node.mode == .normal && onTarget(node) {
                    // A queued node back by other hands (another balancer, the operator) was never drained here.
                    let wasHeld = run.reconnects[node.id]?.phase != .queued
                    run.reconnects[node.id]?.phase = .done
                    if wasHeld { actions.append(.release(node.id)) }
                }
            }
            if everyNodeNormalOnTarget {
                actions += releaseAll()
                actions += complete(now: now)
            } else if let ending = quietEnding(cluster) {
                actions += end(ending.outcome, reason: ending.reason, now: now)
            } else {
                actions += admitQueued(now: now)
            }
        case .idle, .completed:
            break
        }
        return actions
    }

    static func isHigher(_ version: Version, than other: String?) -> Bool {
        other.flatMap(Version.init).map { version > $0 } ?? true
    }

    // MARK: - Ending

    /// A running run whose cluster is quiet on a version that is not the target ends by itself.
    func quietEnding(_ cluster: Cluster) -> (outcome: UpdateRunEnding.Outcome, reason: String)? {
        guard cluster.isQuiet else { return nil }
        let version = cluster.versions.first?.description
        guard let target = run.targetVersion else {
            return (
                .noVersionChange,
                "every server is normal on \(version ?? "its version"); none reached a higher version"
            )
        }
        return (.rolledBack, "every server is normal on \(version ?? "another version"), below the target \(target)")
    }

    mutating func complete(now: Date) -> [UpdateAction] {
        let reason = "every server is normal on \(run.targetVersion ?? "?")"
        let change = transition(to: .completed, reason: reason)
        run.finishedAt = now
        run.installingSince = [:]
        run.lastRun = UpdateRunEnding(
            outcome: .completed, at: now, reason: reason, targetVersion: run.targetVersion,
            startingVersion: run.startingVersion, startedAt: run.startedAt)
        return [change]
    }

    /// Ends the run: back to `idle`, drains released, `lastRun` saying how.
    mutating func end(
        _ outcome: UpdateRunEnding.Outcome, reason: String, now: Date, by actor: String? = nil,
        acknowledging situation: AcknowledgedSituation? = nil
    ) -> [UpdateAction] {
        let from = run.state
        let ending = UpdateRunEnding(
            outcome: outcome, at: now, reason: reason, targetVersion: run.targetVersion,
            startingVersion: run.startingVersion, startedAt: run.startedAt, by: actor)
        let actions = releaseAll()
        run = freshRun()
        run.lastRun = ending
        run.acknowledged = situation
        return actions + [.stateChanged(from: from, to: .idle, reason: "\(outcome.rawValue): \(reason)")]
    }
}
