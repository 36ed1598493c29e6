/// Why a node cannot take a new connection of some class; `nil` from `Eligibility.reason` means it can.
public enum IneligibilityReason: Sendable, Hashable, CustomStringConvertible {
    case down
    case draining
    case drainingForReconnect
    case drainingForInstall
    case maintenance
    case mode(NodeMode)
    case consoleFrozen

    public var description: String {
        switch self {
        case .down: "down"
        case .draining: "draining"
        case .drainingForReconnect: "draining for reconnect"
        case .drainingForInstall: "draining for install"
        case .maintenance: "maintenance"
        case .mode(let mode): mode.rawValue
        case .consoleFrozen: "console frozen during update"
        }
    }
}

/// The one rule deciding which node may take which traffic.
public enum Eligibility {
    /// Why `node` may not take a new `trafficClass` connection, or `nil` when it may.
    ///
    /// - Parameter updateRunning: an update run is in progress, reconnecting or stalled
    ///   (this is what `freeze` looks at).
    public static func reason(
        _ node: NodeStatus,
        for trafficClass: TrafficClass,
        consolePolicy: ConsolePolicy = .normalOnly,
        updateRunning: Bool = false
    ) -> IneligibilityReason? {
        // A failed probe always wins over whatever mode the node last reported.
        guard node.health == .up else { return .down }
        switch node.admin {
        case .active: break
        case .draining: return .draining
        case .maintenance: return .maintenance
        }
        guard !node.reconnectDrain else { return .drainingForReconnect }
        guard !node.installDrain else { return .drainingForInstall }
        switch (trafficClass, node.mode) {
        case (.device, .normal), (.device, .update):
            return nil
        case (.console, .normal):
            return consolePolicy == .freeze && updateRunning ? .consoleFrozen : nil
        case (.console, .update):
            return consolePolicy == .allow ? nil : .mode(.update)
        case (_, let mode):
            return .mode(mode)
        }
    }

    /// Whether `node` may take a new `trafficClass` connection.
    public static func isEligible(
        _ node: NodeStatus,
        for trafficClass: TrafficClass,
        consolePolicy: ConsolePolicy = .normalOnly,
        updateRunning: Bool = false
    ) -> Bool {
        reason(node, for: trafficClass, consolePolicy: consolePolicy, updateRunning: updateRunning) == nil
    }
}
