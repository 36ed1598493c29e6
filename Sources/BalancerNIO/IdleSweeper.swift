import NIOCore

/// Closes the connections of one event loop that moved no bytes for their idle timeout, with one
/// timer for the whole loop instead of one per connection: NIO cancels a timer in time linear in
/// the timers on its loop, which thousands of idle devices make slow, and each timer costs memory.
/// A connection is closed at most a quarter of its timeout (and at most a second) late.
final class IdleSweeper {
    private let eventLoop: any EventLoop
    private var members: [ObjectIdentifier: ConnectionGuard] = [:]
    private var interval = TimeAmount.seconds(1)
    private var sweep: Scheduled<Void>?

    fileprivate init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Watches `member`, whose idle timeout is `timeout`, until `remove` (call on the loop).
    func add(_ member: ConnectionGuard, timeout: TimeAmount) {
        members[ObjectIdentifier(member)] = member
        let wanted = Self.interval(for: timeout)
        if wanted < interval {
            interval = wanted
            sweep?.cancel()
            sweep = nil
        }
        if sweep == nil { schedule() }
    }

    /// Stops watching `member`; the timer stops at its next sweep when no member is left.
    func remove(_ member: ConnectionGuard) {
        members.removeValue(forKey: ObjectIdentifier(member))
    }

    private func schedule() {
        sweep = eventLoop.assumeIsolated().scheduleTask(in: interval) {
            self.sweep = nil
            self.sweepNow()
        }
    }

    private func sweepNow() {
        let now = NIODeadline.now()
        // Closing removes members: collect first, then close.
        var idle: [ConnectionGuard] = []
        var shortest = TimeAmount.hours(24)
        for member in members.values {
            if member.isIdle(at: now) { idle.append(member) }
            if let timeout = member.idleTimeout, timeout < shortest { shortest = timeout }
        }
        for member in idle { member.closeForIdleness() }
        // After a reload to a longer timeout, the sweeps slow down again with the connections it spares.
        interval = Self.interval(for: shortest)
        if !members.isEmpty { schedule() }
    }

    /// A quarter of the timeout, at least 10 ms and at most 1 s (the splice loops sweep by it too).
    static func interval(for timeout: TimeAmount) -> TimeAmount {
        .nanoseconds(min(max(timeout.nanoseconds / 4, 10_000_000), 1_000_000_000))
    }
}

@available(*, unavailable)
extension IdleSweeper: Sendable {}

/// One `IdleSweeper` per event loop of a group, made up front so that finding a connection's
/// sweeper takes no lock.
final class IdleSweepers: Sendable {
    // Each sweeper is only ever used on its own event loop; the table itself never changes.
    private struct Slot: @unchecked Sendable {
        let sweeper: IdleSweeper
    }

    private let slots: [ObjectIdentifier: Slot]

    init(group: any EventLoopGroup) {
        var slots: [ObjectIdentifier: Slot] = [:]
        for eventLoop in group.makeIterator() {
            slots[ObjectIdentifier(eventLoop)] = Slot(sweeper: IdleSweeper(eventLoop: eventLoop))
        }
        self.slots = slots
    }

    /// The sweeper of `eventLoop` (a loop of the group); call on that loop.
    func sweeper(for eventLoop: any EventLoop) -> IdleSweeper? {
        eventLoop.assertInEventLoop()
        return slots[ObjectIdentifier(eventLoop)]?.sweeper
    }
}
