#if os(Linux)
import Foundation

/// Whether the relay splices, and from when: `UMS_BALANCER_SPLICE` in the environment, `auto`
/// (after 256 KiB in one direction) or a number of bytes; unset, `off` or `0`: never.
public struct SpliceSettings: Sendable, Hashable {
    /// Bytes one direction must have moved before it is spliced: short exchanges stay on
    /// read/send, where a pipe would only add calls.
    public var threshold: Int
    /// The capacity asked for each pipe.
    public var pipeSize: Int

    public static let defaultThreshold = 256 * 1024
    public static let environmentKey = "UMS_BALANCER_SPLICE"

    public init(threshold: Int = defaultThreshold, pipeSize: Int = 256 * 1024) {
        self.threshold = threshold
        self.pipeSize = pipeSize
    }

    /// What `UMS_BALANCER_SPLICE` asks for.
    public enum Choice: Sendable, Hashable {
        case off
        case on(SpliceSettings)
        /// A value that is none of the above: splicing stays off, and the log says why.
        case notUnderstood(String)
    }

    /// What `value` (of `UMS_BALANCER_SPLICE`; nil when unset) asks for.
    public static func choice(_ value: String?) -> Choice {
        guard let value = value?.trimmingCharacters(in: .whitespaces).lowercased(), !value.isEmpty else {
            return .off
        }
        switch value {
        case "off", "0", "no", "false": return .off
        case "auto", "on", "yes", "true": return .on(SpliceSettings())
        default:
            guard let threshold = Int(value), threshold > 0 else { return .notUnderstood(value) }
            return .on(SpliceSettings(threshold: threshold))
        }
    }
}
#endif
