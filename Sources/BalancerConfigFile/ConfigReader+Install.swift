import BalancerCore
import Yams

extension ConfigReader {
    /// `install: { url | command, timeout }`: the action a driven update starts a node's installer with.
    mutating func install(_ node: Node, _ what: String) -> InstallSettings? {
        guard let (action, entries) = nodeAction(node, what, extraKeys: ["timeout"]) else { return nil }
        let words: [String]
        switch action {
        case .url(let template): words = [template]
        case .command(let command): words = command
        }
        if !words.contains(where: { $0.contains("{version}") }), let entry = entries["url"] ?? entries["command"] {
            warn(
                entry.value,
                "\(what) names no {version}: the installer is not told which version the update started with"
                    + " (ums-balancer update start --version)")
        }
        var install = InstallSettings(action: action)
        if let value = entries["timeout"]?.value, let d = duration(value, "\(what) timeout") { install.timeout = d }
        return install
    }
}
