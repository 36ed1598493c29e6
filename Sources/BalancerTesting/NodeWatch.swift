import NIOConcurrencyHelpers
import NIOCore

/// Watches a node-process cluster through the nodes' own status (their control ports), often
/// enough to see every install and reconnect: how many nodes were out of service at once, which
/// modes each went through, and how many install requests each received.
public final class NodeWatch: Sendable {
    /// What was seen.
    public struct Report: Sendable {
        /// Rounds of status requests made (each asks every node at once).
        public var rounds = 0
        /// The nodes out of service (`installing`, `reconnecting`, or not answering) in the round that
        /// had the most of them.
        public var mostOut: [String] = []
        /// Each node's modes, in the order seen, without repeats.
        public var modes: [String: [String]] = [:]
        /// Each node's `install_requests`, as last reported.
        public var installRequests: [String: Int] = [:]

        /// The most nodes out of service at once.
        public var mostOutCount: Int { mostOut.count }
    }

    private let report = NIOLockedValueBox(Report())
    private let stopped = NIOLockedValueBox(false)
    private let task: NIOLockedValueBox<Task<Void, Never>?> = NIOLockedValueBox(nil)

    private init() {}

    /// Starts asking every node of `cluster` for its status every `interval` (bounded by `maximumRounds`).
    public static func start(
        _ cluster: NodeProcessCluster, interval: Duration = .milliseconds(25), maximumRounds: Int = 40_000
    ) -> NodeWatch {
        let watch = NodeWatch()
        let task = Task {
            var rounds = 0
            while !watch.stopped.withLockedValue({ $0 }) && rounds < maximumRounds {
                rounds += 1
                let statuses = await withTaskGroup(of: (String, Seen?).self) { group in
                    for id in cluster.ids {
                        group.addTask {
                            let status = try? await cluster.status(id)
                            return (
                                id,
                                status.map {
                                    Seen(mode: $0["mode"] as? String, installRequests: $0["install_requests"] as? Int)
                                }
                            )
                        }
                    }
                    var all: [String: Seen?] = [:]
                    for await (id, seen) in group { all[id] = seen }
                    return all
                }
                watch.record(statuses)
                try? await Task.sleep(for: interval)
            }
        }
        watch.task.withLockedValue { $0 = task }
        return watch
    }

    /// One node's answer in one round.
    private struct Seen: Sendable {
        var mode: String?
        var installRequests: Int?
    }

    private func record(_ statuses: [String: Seen?]) {
        report.withLockedValue { report in
            report.rounds += 1
            var out: [String] = []
            for (id, status) in statuses {
                let mode = status?.mode ?? "not answering"
                if ["installing", "reconnecting", "not answering"].contains(mode) { out.append(id) }
                if report.modes[id]?.last != mode { report.modes[id, default: []].append(mode) }
                if let requests = status?.installRequests { report.installRequests[id] = requests }
            }
            if out.count > report.mostOut.count { report.mostOut = out.sorted() }
        }
    }

    /// What has been seen so far.
    public var seen: Report { report.withLockedValue { $0 } }

    /// Stops watching and returns what was seen.
    public func stop() async -> Report {
        stopped.withLockedValue { $0 = true }
        await task.withLockedValue { $0 }?.value
        return seen
    }
}
