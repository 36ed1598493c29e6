import BalancerDataPath
import NIOCore

/// A connection whose timers a `RelaySweeper` looks at.
protocol SweptConnection: AnyObject {
    /// How often the sweeper must look.
    var shortestTimeout: Duration { get }
    /// The sweeper's look at the timers.
    func tick(_ deadline: NIODeadline)
}

extension NIORelay: SweptConnection {}
extension PathConnection: SweptConnection {}

/// Looks at the timers (idle, connect, handshake, linger) of one event loop's relayed connections,
/// with one timer for the whole loop instead of one per connection: NIO cancels a timer in time
/// linear in the timers on its loop, which thousands of idle devices make slow, and each timer
/// costs memory. A timeout fires at most a quarter of it (and at most a second) late.
final class RelaySweeper {
    private let eventLoop: any EventLoop
    private var members: [ObjectIdentifier: any SweptConnection] = [:]
    private var interval = TimeAmount.seconds(1)
    private var sweep: Scheduled<Void>?

    fileprivate init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Watches `relay` until `remove` (call on the loop).
    func add(_ relay: any SweptConnection) {
        members[ObjectIdentifier(relay)] = relay
        let wanted = TimeAmount(sweepInterval(for: relay.shortestTimeout))
        if wanted < interval {
            interval = wanted
            sweep?.cancel()
            sweep = nil
        }
        if sweep == nil { schedule() }
    }

    /// Stops watching `relay`; the timer stops at its next sweep when no member is left.
    func remove(_ relay: any SweptConnection) {
        members.removeValue(forKey: ObjectIdentifier(relay))
    }

    private func schedule() {
        sweep = eventLoop.assumeIsolated().scheduleTask(in: interval) {
            self.sweep = nil
            self.sweepNow()
        }
    }

    private func sweepNow() {
        let now = NIODeadline.now()
        var shortest = Duration.seconds(86_400)
        // Ticking may end connections, which removes them: go over a copy.
        for relay in Array(members.values) {
            shortest = min(shortest, relay.shortestTimeout)
            relay.tick(now)
        }
        // After a reload to longer timeouts, the sweeps slow down again with the connections they spare.
        interval = TimeAmount(sweepInterval(for: shortest))
        if !members.isEmpty { schedule() }
    }
}

@available(*, unavailable)
extension RelaySweeper: Sendable {}

/// One `RelaySweeper` per event loop of a group, made up front so that finding a connection's
/// sweeper takes no lock.
final class RelaySweepers: Sendable {
    // Each sweeper is only ever used on its own event loop; the table itself never changes.
    private struct Slot: @unchecked Sendable {
        let sweeper: RelaySweeper
    }

    private let slots: [ObjectIdentifier: Slot]

    init(group: any EventLoopGroup) {
        var slots: [ObjectIdentifier: Slot] = [:]
        for eventLoop in group.makeIterator() {
            slots[ObjectIdentifier(eventLoop)] = Slot(sweeper: RelaySweeper(eventLoop: eventLoop))
        }
        self.slots = slots
    }

    /// The sweeper of `eventLoop` (a loop of the group); call on that loop.
    func sweeper(for eventLoop: any EventLoop) -> RelaySweeper? {
        eventLoop.assertInEventLoop()
        return slots[ObjectIdentifier(eventLoop)]?.sweeper
    }
}
