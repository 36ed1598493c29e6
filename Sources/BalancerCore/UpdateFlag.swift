/// Something about an update run that is overdue: shown in `/status` `update.flags`, as a metric,
/// once in the log and on the dashboard. A flag makes a stuck run loud; it never changes routing.
public enum UpdateFlag: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The run is older than `update.max_duration` (UMS asks to finish an update quickly: changes
    /// made in the local copies of update-mode servers are lost).
    case overdue
    /// The node has been reporting `installing` for longer than `update.install_timeout`.
    case installOverdue(NodeID)

    /// `overdue`, `install-overdue:ums2`.
    public var description: String {
        switch self {
        case .overdue: "overdue"
        case .installOverdue(let node): "install-overdue:\(node)"
        }
    }

    public static func < (lhs: UpdateFlag, rhs: UpdateFlag) -> Bool {
        lhs.description < rhs.description
    }
}
