/// What the probes make of a node: its health, and the mode and version it reports.
public struct NodeObservation: Sendable, Hashable {
    public var health: NodeHealth
    public var mode: NodeMode
    public var version: String?

    public init(health: NodeHealth = .down, mode: NodeMode = .unknown, version: String? = nil) {
        self.health = health
        self.mode = mode
        self.version = version
    }
}

/// A change to one node's state, from one of its writers.
public enum NodeEvent: Sendable, Hashable {
    /// The probes' view changed (after rise/fall).
    case observed(NodeObservation)
    /// The operator set the admin state (drain, resume, maintenance).
    case adminStateSet(AdminState)
    /// The operator pinned the mode, or with nil released it to what the node reports.
    case modeOverridden(NodeMode?)
    /// The update run drained the node for its reconnect (true) or released it (false).
    case reconnectDrainSet(Bool)
    /// A driven update drained the node for its install (true) or released it (false).
    case installDrainSet(Bool)
    /// A reload gave the node another address: what the probes knew of the old one is dropped,
    /// the operator's and the update run's decisions stay.
    case readdressed(NodeObservation)
}

/// One node's state, kept apart by who decides it: what the probes observe, what the operator
/// set (admin state, a mode override), the update run's reconnect drain and a driven update's
/// install drain. Routing reads `status`, derived here: an override wins over the reported mode
/// until it is released, which brings the last report back.
public struct NodeRecord: Sendable, Hashable {
    public let id: NodeID
    public private(set) var observation: NodeObservation
    public private(set) var admin: AdminState
    public private(set) var modeOverride: NodeMode?
    public private(set) var reconnectDrain: Bool
    public private(set) var installDrain: Bool
    /// The node as routing sees it.
    public private(set) var status: NodeStatus

    /// A node the probes see as `observation`, with no decision of the operator's or the run's yet.
    public init(id: NodeID, observation: NodeObservation = NodeObservation()) {
        self.init(
            id: id, observation: observation, admin: .active, modeOverride: nil, reconnectDrain: false,
            installDrain: false)
    }

    /// The record behind a routing status (tests and a table built from statuses).
    public init(_ status: NodeStatus) {
        self.init(
            id: status.id,
            observation: NodeObservation(health: status.health, mode: status.mode, version: status.version),
            admin: status.admin, modeOverride: nil, reconnectDrain: status.reconnectDrain,
            installDrain: status.installDrain)
    }

    private init(
        id: NodeID, observation: NodeObservation, admin: AdminState, modeOverride: NodeMode?, reconnectDrain: Bool,
        installDrain: Bool
    ) {
        self.id = id
        self.observation = observation
        self.admin = admin
        self.modeOverride = modeOverride
        self.reconnectDrain = reconnectDrain
        self.installDrain = installDrain
        status = NodeStatus(id: id)
        status = derived()
    }

    /// Applies `event`; returns the status before it when the status changed.
    @discardableResult
    public mutating func apply(_ event: NodeEvent) -> NodeStatus? {
        switch event {
        case .observed(let observation), .readdressed(let observation):
            self.observation = observation
        case .adminStateSet(let admin):
            self.admin = admin
        case .modeOverridden(let mode):
            modeOverride = mode
        case .reconnectDrainSet(let drained):
            reconnectDrain = drained
        case .installDrainSet(let drained):
            installDrain = drained
        }
        let before = status
        status = derived()
        return status == before ? nil : before
    }

    private func derived() -> NodeStatus {
        var status = NodeStatus(
            id: id, health: observation.health, mode: modeOverride ?? observation.mode, admin: admin,
            version: observation.version)
        status.reconnectDrain = reconnectDrain
        status.installDrain = installDrain
        return status
    }
}
