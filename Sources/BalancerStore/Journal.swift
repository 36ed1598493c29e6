import Foundation
import Logging
import Metrics
import Synchronization

/// Takes journal events from anywhere, event loops included, without blocking, and writes them
/// to the store in batches from one task. While the store fails, events wait in the queue and are
/// written, in order, when it takes writes again (retried with a growing pause). The queue is
/// bounded: under a flood, or a store down for long, the oldest unwritten events are dropped,
/// counted and logged, never memory without limit.
public final class Journal: Sendable {
    private let pending = Mutex<Pending>(Pending())
    private let capacity: Int
    private let wakeUp: AsyncStream<Void>.Continuation
    private let wakeUps: AsyncStream<Void>
    private let finished = Atomic<Bool>(false)
    private let store: StateStore?
    private let logger: Logger
    private let retry: (first: Duration, longest: Duration)

    fileprivate struct Pending {
        var events: [JournalEvent] = []
        /// Taken by a write in progress.
        var inFlight = 0
        /// Dropped since the journal started.
        var dropped = 0
    }

    /// A journal writing to `store`; with no store, events are kept nowhere but the log.
    /// `retry` is the pause after a failed write, doubling up to `longest` while the store fails.
    public init(
        store: StateStore?, logger: Logger, capacity: Int = 10_000,
        retry: (first: Duration, longest: Duration) = (.seconds(1), .seconds(30))
    ) {
        (wakeUps, wakeUp) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.store = store
        self.logger = logger
        self.capacity = capacity
        self.retry = retry
    }

    /// Events recorded and not yet written.
    public var unwritten: Int { pending.withLock { $0.events.count + $0.inFlight } }

    /// Records an event; returns at once.
    public func record(_ event: JournalEvent) {
        let firstDrop = pending.withLock { queue in
            queue.events.append(event)
            return queue.trim(to: capacity)
        }
        if firstDrop { reportDrops() }
        wakeUp.yield()
    }

    /// Records an event happening now.
    public func record(_ kind: JournalEvent.Kind, node: String? = nil, actor: String = "balancer", _ message: String) {
        record(JournalEvent(at: Date(), kind: kind, node: node, actor: actor, message: message))
    }

    /// Writes queued events until `finish()`; what is queued by then is still written (one try).
    public func run() async {
        for await _ in wakeUps {
            var pause = retry.first
            while await !flush(), !finished.load(ordering: .relaxed) {
                await sleep(pause)
                pause = min(pause * 2, retry.longest)
            }
        }
        if await !flush() {
            let lost = unwritten
            logger.error(
                "journal events not written at shutdown: the state database fails", metadata: ["events": "\(lost)"])
        }
    }

    /// Writes everything queued so far; false when the store failed (the events stay queued).
    @discardableResult
    public func flush() async -> Bool {
        guard let store else {
            pending.withLock { $0.events.removeAll(keepingCapacity: true) }
            return true
        }
        let batch = pending.withLock { queue in
            defer {
                queue.inFlight = queue.events.count
                queue.events.removeAll(keepingCapacity: true)
            }
            return queue.events
        }
        guard !batch.isEmpty else { return true }
        do {
            try await store.append(batch)
            pending.withLock { $0.inFlight = 0 }
            return true
        } catch {
            // Back in front of what came meanwhile, so the journal keeps its order. The store
            // logs the failure itself, paced.
            let firstDrop = pending.withLock { queue in
                queue.inFlight = 0
                queue.events.insert(contentsOf: batch, at: 0)
                return queue.trim(to: capacity)
            }
            if firstDrop { reportDrops() }
            return false
        }
    }

    /// Stops `run()` once the queue is written.
    public func finish() {
        finished.store(true, ordering: .relaxed)
        wakeUp.finish()
    }

    /// Sleeps `pause`, or less once `finish()` was called.
    private func sleep(_ pause: Duration) async {
        let end = ContinuousClock.now + pause
        while ContinuousClock.now < end, !finished.load(ordering: .relaxed) {
            try? await Task.sleep(for: min(.milliseconds(100), end - ContinuousClock.now))
        }
    }

    private func reportDrops() {
        let dropped = pending.withLock { $0.dropped }
        logger.warning(
            "journal queue full: dropped the oldest unwritten events", metadata: ["dropped_total": "\(dropped)"])
    }
}

extension Journal.Pending {
    /// Drops the oldest events beyond `capacity`; true when a log line is due (the first drop,
    /// then one per 1,000).
    fileprivate mutating func trim(to capacity: Int) -> Bool {
        let excess = events.count - capacity
        guard excess > 0 else { return false }
        events.removeFirst(excess)
        let before = dropped
        dropped += excess
        Counter(label: "ums_balancer_journal_dropped_events_total").increment(by: excess)
        return before == 0 || before / 1_000 != dropped / 1_000
    }
}
