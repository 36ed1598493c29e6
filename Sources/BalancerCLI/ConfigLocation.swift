import BalancerConfigFile
import Foundation

/// Where the commands look for the configuration when `--config` is not given: the installed
/// host's file first, then the one beside a source checkout.
enum ConfigLocation {
    static let installed = "/etc/ums-balancer/ums-balancer.yaml"
    static let checkout = "config/ums-balancer.yaml"

    /// `explicit` when given; else the first of `candidates` that exists; nil when none does.
    static func path(
        _ explicit: String?, candidates: [String] = [installed, checkout],
        exists: (String) -> Bool = { FileManager.default.fileExists(atPath: $0) }
    ) -> String? {
        explicit ?? candidates.first(where: exists)
    }

    /// The error when `--config` was not given and no default file exists: it names every place looked.
    static func missing(_ candidates: [String] = [installed, checkout]) -> ConfigErrors {
        ConfigErrors([
            ConfigError(
                file: candidates.last ?? checkout, line: 1, column: 1,
                message: "no such file, nor \(candidates.dropLast().joined(separator: ", ")): pass --config FILE")
        ])
    }
}
