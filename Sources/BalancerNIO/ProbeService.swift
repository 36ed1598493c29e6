import BalancerCore
import NIOConcurrencyHelpers
import ServiceLifecycle

/// Probes the nodes, as a `Service`: one `NodeMonitor` at a time, replaced when a reload changes the
/// nodes or how they are probed. The first monitor's first round (every node answered once) is
/// what the listeners wait for.
final class ProbeService: Service, Sendable {
    private let prepare: @Sendable () async -> Void
    private let makeMonitor: @Sendable (BalancerConfiguration) -> NodeMonitor
    private let configurations: AsyncStream<BalancerConfiguration>
    private let next: AsyncStream<BalancerConfiguration>.Continuation
    private let firstRound = FirstRound()

    /// Probes with monitors `makeMonitor` builds, starting with `configuration`, once `prepare` is done.
    init(
        configuration: BalancerConfiguration,
        prepare: @escaping @Sendable () async -> Void,
        makeMonitor: @escaping @Sendable (BalancerConfiguration) -> NodeMonitor
    ) {
        self.prepare = prepare
        self.makeMonitor = makeMonitor
        (configurations, next) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
        next.yield(configuration)
    }

    /// From now on probe as `configuration` says (the monitor in place stops first).
    func reconfigure(_ configuration: BalancerConfiguration) {
        next.yield(configuration)
    }

    /// Returns once every node has had its first probe; throws when probing ended before that.
    func firstRoundDone() async throws {
        try await firstRound.wait()
    }

    func run() async throws {
        defer { firstRound.fail() }
        await prepare()
        try await cancelWhenGracefulShutdown {
            var stopRunning: AsyncStream<Void>.Continuation?
            try await withThrowingDiscardingTaskGroup { group in
                for await configuration in self.configurations {
                    stopRunning?.finish()
                    let (stopped, stop) = AsyncStream<Void>.makeStream()
                    stopRunning = stop
                    let monitor = self.makeMonitor(configuration)
                    let firstRound = self.firstRound
                    group.addTask {
                        // The monitor runs until the next configuration replaces it.
                        await withTaskGroup(of: Void.self) { generation in
                            generation.addTask { try? await monitor.run { firstRound.succeed() } }
                            generation.addTask { for await _ in stopped {} }
                            await generation.next()
                            generation.cancelAll()
                        }
                    }
                }
                stopRunning?.finish()
            }
        }
    }
}

/// Once, from any task: the first probe round is done, or probing ended before it was. A waiting
/// task that is cancelled stops waiting.
private final class FirstRound: Sendable {
    private struct State {
        var outcome: Bool?
        var waiters: [Int: CheckedContinuation<Void, any Error>] = [:]
        var nextWaiter = 0
    }

    private let state = NIOLockedValueBox(State())

    func wait() async throws {
        let key = state.withLockedValue { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let known = state.withLockedValue { state -> Bool? in
                    if Task.isCancelled { return false }
                    if let outcome = state.outcome { return outcome }
                    state.waiters[key] = continuation
                    return nil
                }
                switch known {
                case true?: continuation.resume()
                case false?: continuation.resume(throwing: CancellationError())
                case nil: break
                }
            }
        } onCancel: {
            state.withLockedValue { $0.waiters.removeValue(forKey: key) }?.resume(throwing: CancellationError())
        }
    }

    func succeed() { finish(true) }

    func fail() { finish(false) }

    private func finish(_ outcome: Bool) {
        let waiting = state.withLockedValue { state -> [CheckedContinuation<Void, any Error>] in
            guard state.outcome == nil else { return [] }
            state.outcome = outcome
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for continuation in waiting {
            if outcome { continuation.resume() } else { continuation.resume(throwing: CancellationError()) }
        }
    }
}
