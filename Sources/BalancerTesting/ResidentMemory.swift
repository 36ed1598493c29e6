import Foundation
import NIOConcurrencyHelpers

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

/// The highest resident set size of a process while it runs: sampled every 20 ms until stopped.
public final class PeakMemory: Sendable {
    private let peak = NIOLockedValueBox(0)
    private let sampler: Task<Void, Never>

    /// Starts sampling `pid`.
    public init(of pid: pid_t) {
        let peak = self.peak
        sampler = Task {
            while !Task.isCancelled {
                let now = (try? ResidentMemory.of(pid)) ?? 0
                peak.withLockedValue { $0 = max($0, now) }
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
    }

    /// Stops sampling; returns the highest `VmRSS` seen, in bytes.
    public func stop() async -> Int {
        sampler.cancel()
        await sampler.value
        return peak.withLockedValue { $0 }
    }
}
