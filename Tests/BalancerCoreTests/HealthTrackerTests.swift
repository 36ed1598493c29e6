import BalancerCore
import Testing

@Suite struct HealthTrackerTests {
    @Test func firstProbeDecidesAtOnce() {
        var up = HealthTracker(rise: 3, fall: 3)
        #expect(up.record(success: true) == .up)
        var down = HealthTracker(rise: 3, fall: 3)
        #expect(down.record(success: false) == .down)
    }

    @Test func anUpNodeGoesDownOnlyAfterFallFailuresInARow() {
        var tracker = HealthTracker(rise: 2, fall: 3)
        _ = tracker.record(success: true)
        #expect(tracker.record(success: false) == nil)
        #expect(tracker.record(success: false) == nil)
        #expect(tracker.record(success: false) == .down)
        #expect(tracker.health == .down)
    }

    @Test func aSuccessInBetweenResetsTheFailureCount() {
        var tracker = HealthTracker(rise: 2, fall: 2)
        _ = tracker.record(success: true)
        #expect(tracker.record(success: false) == nil)
        #expect(tracker.record(success: true) == nil)
        #expect(tracker.record(success: false) == nil)
        #expect(tracker.health == .up)
    }

    @Test func aDownNodeComesBackAfterRiseSuccesses() {
        var tracker = HealthTracker(rise: 2, fall: 1)
        _ = tracker.record(success: false)
        #expect(tracker.record(success: true) == nil)
        #expect(tracker.record(success: false) == nil)
        #expect(tracker.record(success: true) == nil)
        #expect(tracker.record(success: true) == .up)
    }
}
