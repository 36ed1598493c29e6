import NIOConcurrencyHelpers
import NIOCore

/// Simulated devices: each asks for its profile on a new connection, again and again, until
/// stopped (or a bound on requests is reached), and every answer or failure is kept.
public final class DeviceLoad: Sendable {
    /// One answered request: which node served it, in which mode, from which database.
    public struct Answer: Sendable, Hashable {
        public var node: String
        public var mode: String
        public var database: String
    }

    /// What the devices saw.
    public struct Summary: Sendable {
        public var answers: [Answer]
        public var failures: [String]

        public var served: Int { answers.count }
        /// Requests served per node.
        public var byNode: [String: Int] { answers.reduce(into: [:]) { $0[$1.node, default: 0] += 1 } }
    }

    private let state = NIOLockedValueBox(Summary(answers: [], failures: []))
    private let stopped = NIOLockedValueBox(false)
    private let tasks: NIOLockedValueBox<[Task<Void, Never>]> = NIOLockedValueBox([])

    private init() {}

    /// Starts `devices` devices against `address` (the balancer's device listener).
    public static func start(
        address: SocketAddress,
        devices: Int = 2,
        pause: Duration = .milliseconds(5),
        maximumRequests: Int = 50_000
    ) -> DeviceLoad {
        let load = DeviceLoad()
        let begun = ContinuousClock.now
        // Each failure says when it happened (since the load started) and on which device.
        func failed(_ device: Int, _ what: String) {
            let at = (ContinuousClock.now - begun).formatted(
                .units(allowed: [.seconds], fractionalPart: .show(length: 2)))
            load.state.withLockedValue { $0.failures.append("device \(device) at \(at): \(what)") }
        }
        let started = (0..<devices).map { device in
            Task {
                var count = 0
                while !load.stopped.withLockedValue({ $0 }) && count < maximumRequests {
                    count += 1
                    let mac = String(format: "00E0C5%06X", device * 100_000 + count % 50)
                    do {
                        let response = try await TestHTTP.request("GET", "/device/\(mac)/profile", to: address)
                        if response.status == 200, let json = response.json, let node = json["node"] as? String {
                            let answer = Answer(
                                node: node, mode: json["mode"] as? String ?? "?",
                                database: json["database"] as? String ?? "?")
                            load.state.withLockedValue { $0.answers.append(answer) }
                        } else {
                            failed(device, "HTTP \(response.status): \(response.body.prefix(100))")
                        }
                    } catch {
                        failed(device, "\(error)")
                    }
                    try? await Task.sleep(for: pause)
                }
            }
        }
        load.tasks.withLockedValue { $0 = started }
        return load
    }

    /// What has been seen so far.
    public var summary: Summary { state.withLockedValue { $0 } }

    /// Stops the devices and returns what they saw.
    public func stop() async -> Summary {
        stopped.withLockedValue { $0 = true }
        for task in tasks.withLockedValue({ $0 }) { await task.value }
        return summary
    }
}
