import Foundation

/// A process's resident set size, from `/proc/PID/status`.
public enum ResidentMemory {
    /// `VmRSS` of `pid`, in bytes.
    public static func of(_ pid: pid_t) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kib = Int(line.split(separator: " ").dropFirst().first ?? "")
        else { throw TestKitError("no VmRSS in /proc/\(pid)/status") }
        return kib * 1024
    }
}
