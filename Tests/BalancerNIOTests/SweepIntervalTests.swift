import BalancerDataPath
import Testing

/// How late a connection's timeout may fire: the sweep runs every quarter of the shortest
/// timeout, within 10 ms and 1 s.
@Suite struct SweepIntervalTests {
    @Test(arguments: [
        (Duration.seconds(3600), Duration.seconds(1)),
        (.seconds(4), .seconds(1)),
        (.milliseconds(3999), .nanoseconds(999_750_000)),
        (.seconds(3), .milliseconds(750)),
        (.milliseconds(1500), .milliseconds(375)),
        (.milliseconds(100), .milliseconds(25)),
        (.microseconds(40_004), .microseconds(10_001)),
        (.milliseconds(40), .milliseconds(10)),
        (.milliseconds(20), .milliseconds(10)),
        (.zero, .milliseconds(10)),
    ])
    func aQuarterOfTheTimeoutWithinTenMillisecondsAndOneSecond(timeout: Duration, interval: Duration) {
        #expect(sweepInterval(for: timeout) == interval)
    }
}
