/// The words a `by-path` listener answers a request with when no node takes it.
public enum RefusalPage {
    /// Why nothing can take the request, in words an operator or console user understands.
    public static func text(for refusal: Refusal) -> String {
        let reasons = refusal.reasons.map(\.reason)
        let what = refusal.trafficClass == .console ? "console logins" : "device connections"
        if reasons.isEmpty { return "no UMS servers are configured" }
        if reasons.contains(.consoleFrozen) {
            return "\(what) are frozen while the update runs (update.console: freeze); try again after the update"
        }
        let inUpdate = reasons.filter { $0 == .mode(.update) || $0 == .drainingForReconnect }.count
        if refusal.trafficClass == .console, inUpdate > 0,
            inUpdate + reasons.filter({ $0 == .mode(.installing) || $0 == .drainingForInstall }).count
                == reasons.count
        {
            // The counts `/status` shows: servers on the target version, not servers in update mode.
            let counts = refusal.update.map { " (\($0.updated) of \($0.total) servers updated)" } ?? ""
            return "all servers in update mode: \(what) are paused until the update completes\(counts)"
        }
        let detail = refusal.reasons.map { "\($0.node) \($0.reason)" }.joined(separator: ", ")
        return "no UMS server can take \(what) right now: \(detail)"
    }

    /// What a client whose request or connection no node took reads.
    public static func text(for reason: ConnectionEndReason) -> String {
        switch reason {
        case .noEligibleNode(let refusal):
            text(for: refusal)
        case .everyNodeFailed(_, let failures):
            "no UMS server answered: \(failures.map(\.description).joined(separator: ", ")); try again in a moment"
        case .limit(let limit):
            "the balancer is at its limit: \(limit); try again in a moment"
        default:
            "no UMS server can take the request right now"
        }
    }
}
