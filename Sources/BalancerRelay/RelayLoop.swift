#if os(Linux)
import BalancerDataPath
import CBalancerLinux
import Foundation
import Glibc
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// One thread with its own epoll set, moving bytes between the client and node sockets of plain
/// TCP listeners.
///
/// Why not SwiftNIO here: a proxied connection through NIO channels costs 34 system calls (13 of
/// them `epoll_ctl`: NIO changes a channel's interest set for connect, EOF, reading and each
/// half-close) and NIO's pipeline machinery on top; HAProxy needs about 18. Sockets here are
/// registered once, edge-triggered, for everything they will ever be asked for, so the only
/// `epoll_ctl` per socket is the one that adds it. TLS, HTTP and the admin API stay on NIO.
final class RelayLoop: @unchecked Sendable {
    // Everything below `inbox` is touched on the loop's thread only; `execute` is the way in.
    /// -1 once the thread has ended, so a late task's epoll call fails instead of reaching a
    /// descriptor that reused the number.
    private var epoll: CInt
    private let wakeup: CInt
    private let control = NIOLockedValueBox(Control())

    /// Tasks for the loop, and whether it still runs them.
    private struct Control {
        var inbox: [@Sendable () -> Void] = []
        var state = State.running

        enum State {
            case running
            case stopping(CheckedContinuation<Void, Never>)
            case stopped
        }
    }
    private let logger: Logger
    private let name: String

    private var slots: [Slot] = []
    private var connections: [ObjectIdentifier: RelayConnection] = [:]
    /// Connections whose half-close is due: carried out after the next poll, unless the
    /// connection closes for good in it (its peer's EOF usually arrives there: then closing the
    /// socket sends the FIN, and the `shutdown` call is saved). Two lists, swapped each round.
    private var halfClosesDue: [RelayConnection] = []
    private var halfClosesAfterPoll: [RelayConnection] = []
    /// Connections whose node connected while the client had sent nothing yet: the handshake's
    /// last ACK waits for the client's first bytes until `until`, then leaves on its own.
    private var heldHandshakeAcks: [(connection: RelayConnection, until: NIODeadline)] = []
    /// How long a node's handshake ACK waits for the client's first bytes: a client sends them
    /// with (or just after) its own handshake's ACK; a node that speaks first waits no longer.
    static let handshakeAckHold = TimeAmount.milliseconds(1)
    private var pausedListeners: [(listener: RelayListener, until: NIODeadline)] = []
    /// Listeners this loop stopped accepting on until the descriptor budget has room again.
    private var waitingForDescriptors: [RelayListener] = []
    /// The descriptors this loop's connections may hold, shared by every loop.
    let budget: DescriptorBudget
    /// The splice(2) path's pipes, when splicing is on.
    let splice: SplicePool?
    private var running = true
    private var sweepEvery = TimeAmount.seconds(1)
    private var nextSweep = NIODeadline.now()
    /// Every read lands here first and is written on at once; only what a socket cannot take yet
    /// is copied into that connection's own buffer. 256 KiB: a bulk transfer on loopback moves
    /// 1.6x what 64 KiB reads manage (see Benchmarks/README.md).
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 262_144, alignment: 16)
    /// The time at the last wakeup: exact enough for idle and connect deadlines, and one clock
    /// read per batch of events instead of one per read.
    private(set) var now = NIODeadline.now()

    private static let wakeupTag = UInt64.max
    private static let maxEvents: CInt = 256

    /// Who owns a descriptor; `generation` tells an event for a closed descriptor from one for a
    /// new socket that got the same number in the same batch.
    private struct Slot {
        var generation: UInt32 = 0
        var owner: Owner = .none
    }

    enum Owner {
        case none
        case listener(RelayListener)
        case client(RelayConnection)
        case node(RelayConnection)
    }

    init(name: String, logger: Logger, budget: DescriptorBudget, splice: SpliceSettings? = nil) throws {
        self.logger = logger
        self.budget = budget
        self.name = name
        self.splice = splice.map { SplicePool(settings: $0, budget: budget) }
        epoll = epoll_create1(CInt(EPOLL_CLOEXEC))
        guard epoll >= 0 else { throw IOError(errnoCode: errno, reason: "epoll_create1") }
        wakeup = eventfd(0, CInt(EFD_NONBLOCK | EFD_CLOEXEC))
        guard wakeup >= 0 else {
            Glibc.close(epoll)
            throw IOError(errnoCode: errno, reason: "eventfd")
        }
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.u64 = Self.wakeupTag
        epoll_ctl(epoll, EPOLL_CTL_ADD, wakeup, &event)
        Thread { [self] in run() }.start()
    }

    /// Runs `task` on the loop's thread, soon.
    func execute(_ task: @escaping @Sendable () -> Void) {
        let queued = control.withLockedValue { control in
            guard case .stopped = control.state else {
                control.inbox.append(task)
                return true
            }
            return false
        }
        guard queued else {
            // The thread is gone, so nothing else touches the loop's state: run it here.
            task()
            return
        }
        var one: UInt64 = 1
        _ = Glibc.write(wakeup, &one, 8)
    }

    /// Runs `task` on the loop's thread and waits for it.
    func submit<T: Sendable>(_ task: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            execute { continuation.resume(returning: task()) }
        }
    }

    /// Closes every connection (the access log says `shutdown`) and ends the thread.
    func stop() async {
        await withCheckedContinuation { continuation in
            let alreadyStopped = control.withLockedValue { control in
                guard case .running = control.state else { return true }
                control.state = .stopping(continuation)
                return false
            }
            if alreadyStopped {
                continuation.resume()
            } else {
                execute { [self] in running = false }
            }
        }
    }

    // MARK: - Descriptors (on the loop)

    /// Watches `fd` for `events`, edge-triggered unless `levelTriggered`; false when epoll refuses.
    func watch(_ fd: CInt, for owner: Owner, events: UInt32, levelTriggered: Bool = false) -> Bool {
        let index = Int(fd)
        if index >= slots.count {
            slots.append(contentsOf: repeatElement(Slot(), count: max(index + 1 - slots.count, slots.count)))
        }
        slots[index].generation &+= 1
        slots[index].owner = owner
        var event = epoll_event()
        event.events = events | (levelTriggered ? 0 : EPOLLET.rawValue)
        event.data.u64 = UInt64(UInt32(bitPattern: fd)) | UInt64(slots[index].generation) << 32
        if epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) != 0 {
            slots[index].owner = .none
            return false
        }
        return true
    }

    /// Forgets `fd`; the caller closes it (closing takes it out of the epoll set).
    func forget(_ fd: CInt) {
        // A socket that failed before it was watched may lie beyond the table.
        guard Int(fd) < slots.count else { return }
        slots[Int(fd)].owner = .none
        slots[Int(fd)].generation &+= 1
    }

    /// Takes a listening socket shared with other loops out of this loop's set.
    func unwatch(_ fd: CInt) {
        epoll_ctl(epoll, EPOLL_CTL_DEL, fd, nil)
        forget(fd)
        pausedListeners.removeAll { $0.listener.fd == fd }
        if waitingForDescriptors.contains(where: { $0.fd == fd }) {
            waitingForDescriptors.removeAll { $0.fd == fd }
            budget.stoppedWaiting()
        }
    }

    // MARK: - Connections (on the loop)

    func adopt(_ connection: RelayConnection) {
        connections[ObjectIdentifier(connection)] = connection
        let wanted = TimeAmount(sweepInterval(for: connection.shortestTimeout))
        if wanted < sweepEvery {
            sweepEvery = wanted
            nextSweep = min(nextSweep, now + wanted)
        }
    }

    /// Half-closes `connection`'s sockets that are due after the next poll.
    func halfCloseAfterPoll(_ connection: RelayConnection) {
        halfClosesDue.append(connection)
    }

    /// Releases `connection`'s held handshake ACK after `handshakeAckHold` unless bytes took it along.
    func holdHandshakeAck(of connection: RelayConnection) {
        heldHandshakeAcks.append((connection, now + Self.handshakeAckHold))
    }

    func release(_ connection: RelayConnection) {
        connections.removeValue(forKey: ObjectIdentifier(connection))
    }

    /// Closes the connections of one listener (`nil`: all) for good.
    func closeAll(listener: Int?) {
        for connection in Array(connections.values) where listener == nil || connection.listenerKey == listener {
            connection.shutDown()
        }
    }

    /// The descriptor budget is spent: stop accepting on `listener` (clients wait in its backlog)
    /// until a connection gives descriptors back.
    func waitForDescriptors(_ listener: RelayListener) {
        guard !waitingForDescriptors.contains(where: { $0 === listener }) else { return }
        epoll_ctl(epoll, EPOLL_CTL_DEL, listener.fd, nil)
        forget(listener.fd)
        waitingForDescriptors.append(listener)
        budget.startedWaiting()
        DescriptorBudget.acceptPaused(listener: listener.name)
    }

    /// Descriptors were given back: accept again (an epoll set reports a backlog at once).
    func resumeWaitingListeners() {
        let waiting = waitingForDescriptors
        waitingForDescriptors = []
        for listener in waiting {
            budget.stoppedWaiting()
            _ = watch(listener.fd, for: .listener(listener), events: listener.events, levelTriggered: true)
        }
    }

    /// Out of descriptors: stop accepting on `listener` for a moment instead of spinning on it.
    func pause(_ listener: RelayListener) {
        epoll_ctl(epoll, EPOLL_CTL_DEL, listener.fd, nil)
        forget(listener.fd)
        let until = now + .milliseconds(100)
        pausedListeners.append((listener, until))
        nextSweep = min(nextSweep, until)
        logger.error(
            "cannot accept: out of file descriptors; pausing the listener for 100 ms",
            metadata: ["listener": "\(listener.name)", "error": "\(String(cString: strerror(errno)))"])
        DescriptorBudget.acceptPaused(listener: listener.name)
    }

    // MARK: - The loop

    private func run() {
        // The name `top -H` and perf show (Linux allows 15 characters).
        _ = cbl_name_this_thread(String(name.prefix(15)))
        if splice != nil {
            // splice(2) into a socket whose peer is gone raises SIGPIPE (it takes no MSG_NOSIGNAL):
            // blocked on this thread, it stays pending here instead of ending the process.
            var pipeSignal = sigset_t()
            sigemptyset(&pipeSignal)
            sigaddset(&pipeSignal, SIGPIPE)
            pthread_sigmask(SIG_BLOCK, &pipeSignal, nil)
        }
        let events = UnsafeMutableBufferPointer<epoll_event>.allocate(capacity: Int(Self.maxEvents))
        defer { events.deallocate() }
        while running {
            swap(&halfClosesDue, &halfClosesAfterPoll)
            // Half-closes wait for this poll only: it must not block.
            var wait = halfClosesAfterPoll.isEmpty ? max(0, (nextSweep - now).nanoseconds / 1_000_000 + 1) : 0
            if !heldHandshakeAcks.isEmpty { wait = min(wait, 1) }
            let count = epoll_wait(epoll, events.baseAddress, Self.maxEvents, CInt(min(wait, 1000)))
            now = .now()
            if count < 0 {
                if errno == EINTR { continue }
                logger.critical("epoll_wait failed", metadata: ["error": "\(String(cString: strerror(errno)))"])
                break
            }
            for index in 0..<Int(count) {
                dispatch(events[index].events, tag: events[index].data.u64)
            }
            for connection in halfClosesAfterPoll { connection.halfCloseDueOutputs() }
            halfClosesAfterPoll.removeAll(keepingCapacity: true)
            if !heldHandshakeAcks.isEmpty {
                // What a connection does here (a read, a write, a close) never holds another ACK:
                // only a node's connect event does, so the list is not changed under the loop.
                let now = now
                heldHandshakeAcks.removeAll { $0.connection.handshakeAckSettled(due: now >= $0.until) }
            }
            if now >= nextSweep { sweep() }
        }
        halfClosesDue = []
        halfClosesAfterPoll = []
        heldHandshakeAcks = []
        closeAll(listener: nil)
        let (late, waiting) = control.withLockedValue {
            control -> ([@Sendable () -> Void], CheckedContinuation<Void, Never>?) in
            var waiting: CheckedContinuation<Void, Never>?
            if case .stopping(let continuation) = control.state { waiting = continuation }
            let late = control.inbox
            control.state = .stopped
            control.inbox = []
            return (late, waiting)
        }
        // Tasks that came in while the loop wound down still run (a listener closing, say).
        for task in late { task() }
        splice?.closeIdle()
        Glibc.close(wakeup)
        Glibc.close(epoll)
        epoll = -1
        buffer.deallocate()
        waiting?.resume()
    }

    private func dispatch(_ events: UInt32, tag: UInt64) {
        if tag == Self.wakeupTag {
            runInbox()
            return
        }
        let index = Int(UInt32(truncatingIfNeeded: tag))
        guard index < slots.count, slots[index].generation == UInt32(truncatingIfNeeded: tag >> 32) else { return }
        switch slots[index].owner {
        case .none: break
        case .listener(let listener): listener.accept(on: self)
        case .client(let connection): connection.clientEvent(events)
        case .node(let connection): connection.nodeEvent(events)
        }
    }

    private func runInbox() {
        var count: UInt64 = 0
        _ = Glibc.read(wakeup, &count, 8)
        let tasks = control.withLockedValue { control in
            defer { control.inbox.removeAll(keepingCapacity: true) }
            return control.inbox
        }
        for task in tasks { task() }
    }

    private func sweep() {
        var shortest = Duration.seconds(86_400)
        for connection in Array(connections.values) {
            connection.checkDeadlines()
            shortest = min(shortest, connection.shortestTimeout)
        }
        sweepEvery = TimeAmount(sweepInterval(for: shortest))
        nextSweep = now + sweepEvery
        // A wake-up that raced the pause is made up for here.
        if !waitingForDescriptors.isEmpty, budget.used + DescriptorBudget.perConnection <= budget.capacity {
            resumeWaitingListeners()
        }
        let due = pausedListeners.filter { $0.until <= now }
        pausedListeners.removeAll { $0.until <= now }
        for paused in due {
            _ = watch(
                paused.listener.fd, for: .listener(paused.listener), events: paused.listener.events,
                levelTriggered: true)
        }
        if let next = pausedListeners.map(\.until).min() { nextSweep = min(nextSweep, next) }
    }

}

/// The relay's loops, as many as the balancer has event-loop threads.
public final class RelayLoops: Sendable {
    let loops: [RelayLoop]

    /// Starts `count` loops (at least one), each on a thread of its own, sharing `budget`;
    /// `splice` turns the splice(2) path on (by default as `UMS_BALANCER_SPLICE` says).
    public init(
        count: Int, logger: Logger, budget: DescriptorBudget,
        splice: SpliceSettings.Choice = SpliceSettings.choice(
            ProcessInfo.processInfo.environment[SpliceSettings.environmentKey])
    ) throws {
        var settings: SpliceSettings?
        switch splice {
        case .off:
            break
        case .on(let chosen):
            settings = chosen
            logger.notice(
                "relay: splicing connections after \(chosen.threshold) bytes in one direction",
                metadata: ["variable": "\(SpliceSettings.environmentKey)"])
        case .notUnderstood(let value):
            logger.warning(
                "\(SpliceSettings.environmentKey)=\(value) is not understood (auto, off or a number of bytes): splicing stays off"
            )
        }
        var loops: [RelayLoop] = []
        for index in 0..<max(1, count) {
            let loop = try RelayLoop(name: "ums-relay-\(index)", logger: logger, budget: budget, splice: settings)
            // A strong reference: a weak one gives the loop a side table, and every retain and
            // release of it then takes the slow path. The loops live as long as the budget does.
            budget.onFreed { loop.execute { loop.resumeWaitingListeners() } }
            loops.append(loop)
        }
        self.loops = loops
    }

    /// Closes every connection on every loop and ends the threads.
    public func stop() async {
        for loop in loops { await loop.stop() }
    }

}
#endif
