import BalancerCore
import BalancerStore
import Foundation

/// What an operator can change at runtime (the admin API calls these).
extension Balancer {
    /// Sets a node's admin state; returns false for an unknown node. Recorded with who did it.
    @discardableResult
    public func setAdminState(_ admin: AdminState, of node: NodeID, actor: String) async -> Bool {
        guard let before = directory.status(of: node) else { return false }
        directory.apply(.adminStateSet(admin), to: node)
        if before.admin != admin {
            logger.notice(
                "admin state changed",
                metadata: ["node": "\(node)", "admin": "\(before.admin) -> \(admin)", "by": "\(actor)"])
            journal.record(.admin, node: node, actor: actor, "\(before.admin) -> \(admin)")
            // Maintenance changes who counts in "n of m".
            await coordinator.nodesChanged()
        }
        return true
    }

    /// Overrides the mode a node reports until cleared with `nil`; returns false for an unknown node.
    @discardableResult
    public func overrideMode(_ mode: NodeMode?, of node: NodeID, actor: String) async -> Bool {
        guard directory.status(of: node) != nil else { return false }
        directory.apply(.modeOverridden(mode), to: node)
        let text = mode.map { "mode overridden to \($0)" } ?? "mode override cleared"
        logger.notice("\(text)", metadata: ["node": "\(node)", "by": "\(actor)"])
        journal.record(.mode, node: node, actor: actor, text)
        await coordinator.nodesChanged()
        return true
    }

    /// Closes the update run by hand (`POST /update/end`), journaled with `actor`; throws why not
    /// while a node is installing or reconnecting, or when no run is under way.
    public func endUpdateRun(actor: String) async throws(UpdateRunMachine.EndRefusal) -> UpdateRun {
        try await coordinator.endRun(actor: actor)
        return await coordinator.run
    }
}
