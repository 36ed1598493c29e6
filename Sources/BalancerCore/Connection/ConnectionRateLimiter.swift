/// A listener's `max_connection_rate`: a token bucket that holds one second's worth of new
/// connections and refills at the rate, so a burst after a quiet second is let through while a
/// reconnect storm is spread out.
public struct ConnectionRateLimiter: Sendable, Hashable {
    /// New connections per second.
    public let rate: Int
    private var tokens: Double
    private var last: MonotonicInstant?

    public init(rate: Int) {
        self.rate = max(1, rate)
        self.tokens = Double(self.rate)
    }

    /// Takes one token at `now`; false when none is left.
    public mutating func admit(now: MonotonicInstant) -> Bool {
        if let last {
            let elapsed = Double((now - last).nanosecondsClamped) / 1e9
            tokens = min(Double(rate), tokens + elapsed * Double(rate))
        }
        last = now
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
