import Foundation

/// The pre-flight report before a rolling update (`ums-balancer update plan`): IGEL's checklist
/// (every server running and on one version, no orphaned servers, clocks within a minute) and what
/// the balancer knows beyond it (capacity with a server out, the order, the console policy), each a
/// pass, warn or fail line that says what to do.
public struct UpdatePlan: Sendable, Hashable {
    public enum Result: String, Sendable, Hashable, Codable {
        case pass, warn, fail
    }

    /// One line of the report.
    public struct Check: Sendable, Hashable {
        public var name: String
        public var result: Result
        /// What was found, and for warn and fail, what to do.
        public var detail: String

        public init(_ name: String, _ result: Result, _ detail: String) {
            self.name = name
            self.result = result
            self.detail = detail
        }
    }

    /// What one node looks like to the plan.
    public struct Node: Sendable, Hashable {
        public var status: NodeStatus
        public var connections: Int
        /// The node's configured `max_connections`.
        public var maxConnections: Int?
        /// The node's clock minus the balancer's, from its status answer's `Date`; nil: unknown.
        public var clockSkew: TimeInterval?

        public init(status: NodeStatus, connections: Int, maxConnections: Int? = nil, clockSkew: TimeInterval? = nil) {
            self.status = status
            self.connections = connections
            self.maxConnections = maxConnections
            self.clockSkew = clockSkew
        }
    }

    /// UMS requires the servers' clocks within one minute of each other.
    public static let maximumClockSkew: TimeInterval = 60

    public var checks: [Check]
    /// The order the servers are updated in; the last one renews the productive schema.
    public var order: [NodeID]

    /// No check failed.
    public var ready: Bool { !checks.contains { $0.result == .fail } }

    public init(checks: [Check], order: [NodeID]) {
        self.checks = checks
        self.order = order
    }

    /// The plan for `nodes` (in configuration order) as they stand, with the run and settings given.
    /// `withoutInstall`: the counted nodes with no `install` action (nil: not reported).
    public init(
        nodes: [Node], run: UpdateRun, consolePolicy: ConsolePolicy, hasReconnectAction: Bool, maxUnavailable: Int,
        withoutInstall: [NodeID]? = nil
    ) {
        let counted = nodes.filter { $0.status.admin != .maintenance }
        var checks: [Check] = []
        checks.append(Self.noRun(run))
        checks.append(Self.everyNodeAnswers(counted))
        checks.append(Self.everyNodeNormal(counted))
        checks.append(Self.oneVersion(counted))
        checks.append(Self.clocks(counted))
        checks.append(Self.capacity(counted))
        let left = nodes.filter { $0.status.admin == .maintenance }.map(\.status.id)
        if !left.isEmpty {
            checks.append(
                Check(
                    "maintenance", .warn,
                    "\(left.joined(separator: ", ")) in maintenance: not counted in n of m and not updated with the"
                        + " others; update it on its own or resume it first"))
        }
        let order = counted.map(\.status.id)
        checks.append(Self.orderCheck(order))
        checks.append(Self.console(consolePolicy))
        checks.append(
            Self.reconnect(hasReconnectAction, maxUnavailable: maxUnavailable, updateModeNodes: order.count - 1))
        if let withoutInstall { checks.append(Self.install(withoutInstall.filter(order.contains))) }
        self.init(checks: checks, order: order)
    }

    // MARK: - Checks

    static func noRun(_ run: UpdateRun) -> Check {
        guard run.isRunning else { return Check("update run", .pass, "no update run under way") }
        return Check("update run", .fail, "\(run.summary): finish or end it first (ums-balancer update end)")
    }

    static func everyNodeAnswers(_ nodes: [Node]) -> Check {
        let silent = nodes.filter { $0.status.health != .up }.map(\.status.id)
        guard silent.isEmpty else {
            return Check(
                "servers running", .fail,
                "\(silent.joined(separator: ", ")) configured but not answering: a server registered but not"
                    + " running never reconnects to the productive database; start it, or remove it from the"
                    + " configuration and from UMS's server list")
        }
        return Check("servers running", .pass, "\(nodes.map(\.status.id).joined(separator: ", ")) answer")
    }

    static func everyNodeNormal(_ nodes: [Node]) -> Check {
        let other = nodes.filter { $0.status.health == .up && $0.status.mode != .normal }
        guard other.isEmpty else {
            let list = other.map { "\($0.status.id) \($0.status.mode)" }.joined(separator: ", ")
            return Check("normal mode", .fail, "\(list): wait until every server is back in normal mode")
        }
        return Check("normal mode", .pass, "every server is in normal mode")
    }

    static func oneVersion(_ nodes: [Node]) -> Check {
        let versions = Set(nodes.compactMap(\.status.version)).sorted()
        switch versions.count {
        case 0: return Check("one version", .warn, "no server reports a version: cannot tell what is installed")
        case 1: return Check("one version", .pass, "every server runs \(versions[0])")
        default:
            let list = nodes.map { "\($0.status.id) \($0.status.version ?? "?")" }.joined(separator: ", ")
            return Check("one version", .fail, "\(list): bring every server to one version first")
        }
    }

    static func clocks(_ nodes: [Node]) -> Check {
        let off = nodes.filter { abs($0.clockSkew ?? 0) >= maximumClockSkew }
        if !off.isEmpty {
            let list = off.map { "\($0.status.id) \(Int(($0.clockSkew ?? 0).rounded())) s" }.joined(separator: ", ")
            return Check(
                "clocks", .fail, "\(list) off the balancer's clock: UMS requires under one minute; fix NTP first")
        }
        let unknown = nodes.filter { $0.clockSkew == nil }.map(\.status.id)
        guard unknown.isEmpty else {
            return Check(
                "clocks", .warn,
                "cannot tell the clock of \(unknown.joined(separator: ", ")) (no Date in its status answer):"
                    + " check it is within one minute")
        }
        let worst = nodes.map { abs($0.clockSkew ?? 0) }.max() ?? 0
        return Check("clocks", .pass, "every server within \(Int(worst.rounded(.up))) s of the balancer")
    }

    static func capacity(_ nodes: [Node]) -> Check {
        guard nodes.count > 1 else {
            return Check("capacity", .warn, "one server: its devices are not served while it installs")
        }
        let total = nodes.map(\.connections).reduce(0, +)
        guard let busiest = nodes.max(by: { $0.connections < $1.connections }) else {
            return Check("capacity", .warn, "no servers")
        }
        let others = nodes.filter { $0.status.id != busiest.status.id }
        let unlimited = others.filter { $0.maxConnections == nil }.map(\.status.id)
        guard unlimited.isEmpty else {
            return Check(
                "capacity", .warn,
                "\(total) connections now; without max_connections on \(unlimited.joined(separator: ", ")) the"
                    + " balancer cannot tell whether the others carry them while \(busiest.status.id) is out")
        }
        let room = others.compactMap(\.maxConnections).reduce(0, +)
        guard room >= total else {
            return Check(
                "capacity", .fail,
                "\(total) connections now, but with \(busiest.status.id) out the others take \(room)"
                    + " (max_connections): add a server or update at a quieter time")
        }
        return Check(
            "capacity", .pass,
            "with \(busiest.status.id) (the busiest) out, the others take \(room) of the \(total) connections now")
    }

    static func orderCheck(_ order: [NodeID]) -> Check {
        guard let last = order.last else { return Check("order", .fail, "no server to update") }
        let first = order.dropLast()
        let detail =
            first.isEmpty
            ? "\(last) alone, renewing the productive schema"
            : "\(first.joined(separator: ", ")) (\(first.count == 1 ? "" : "each ")in update mode on a local copy),"
                + " then \(last) last"
                + " (renews the productive schema)"
        return Check("order", .pass, detail)
    }

    static func console(_ policy: ConsolePolicy) -> Check {
        switch policy {
        case .normalOnly:
            return Check(
                "console", .pass,
                "normal-only: logins go to servers still in normal mode; none while the last one installs")
        case .freeze:
            return Check("console", .pass, "freeze: no console logins from the first install to the end")
        case .allow:
            return Check(
                "console", .warn,
                "allow: logins may reach servers in update mode, whose changes are lost: set update.console")
        }
    }

    static func install(_ missing: [NodeID]) -> Check {
        guard missing.isEmpty else {
            return Check(
                "install", .warn,
                "no install action for \(missing.joined(separator: ", ")): run the installers yourself (the balancer"
                    + " follows), or add `install` to let it drive the update")
        }
        return Check("install", .pass, "the balancer can drive this update: ums-balancer update start --version V")
    }

    static func reconnect(_ configured: Bool, maxUnavailable: Int, updateModeNodes: Int) -> Check {
        let servers =
            updateModeNodes == 1 ? "the update-mode server" : "the \(max(0, updateModeNodes)) update-mode servers"
        guard configured else {
            return Check("reconnect", .warn, "no reconnect action: you restart \(servers) yourself")
        }
        return Check("reconnect", .pass, "the balancer reconnects \(servers), \(maxUnavailable) at a time")
    }
}
