import BalancerCore
import NIOCore

extension RunningBalancer {
    /// A console login through the `console` listener: the answer, or nil when the balancer
    /// refused it (a console refusal closes the connection without a byte).
    public func consoleLogin() async -> TestHTTP.Response? {
        guard let address = try? address("console") else { return nil }
        return try? await TestHTTP.request("POST", "/console/login", to: address, body: "{}")
    }

    /// Waits, polling, until the update run satisfies `condition`, and returns it.
    @discardableResult
    public func waitForRun(
        _ what: String, timeout: Duration = .seconds(20), _ condition: @Sendable (UpdateRun) -> Bool
    ) async throws -> UpdateRun {
        let deadline = ContinuousClock.now + timeout
        while true {
            let run = await balancer.updateRun()
            if condition(run) { return run }
            guard ContinuousClock.now < deadline else {
                throw TestKitError("the update run never became \(what): \(run.state.rawValue), \(run.summary)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
