import BalancerCore

/// `GET /update/plan`: the pre-flight report before a rolling update.
public struct PlanDocument: Codable, Sendable, Hashable {
    /// No check failed.
    public var ready: Bool
    /// The order the servers are updated in; the last renews the productive schema.
    public var order: [String]
    public var checks: [Check]

    /// One line: `pass`, `warn` or `fail`, what was found and what to do.
    public struct Check: Codable, Sendable, Hashable {
        public var name: String
        public var result: String
        public var detail: String
    }

    public init(of plan: UpdatePlan) {
        ready = plan.ready
        order = plan.order
        checks = plan.checks.map { Check(name: $0.name, result: $0.result.rawValue, detail: $0.detail) }
    }
}
