import Foundation
import Logging
import Synchronization

/// Takes journal events from anywhere, event loops included, without blocking, and writes them
/// to the store in batches from one task. The queue is bounded: under a flood the oldest
/// unwritten events are dropped and the drop is logged, never memory without limit.
public final class Journal: Sendable {
    private let pending = Mutex<[JournalEvent]>([])
    private let capacity: Int
    private let wakeUp: AsyncStream<Void>.Continuation
    private let wakeUps: AsyncStream<Void>
    private let store: StateStore?
    private let logger: Logger

    /// A journal writing to `store`; with no store, events are kept nowhere but the log.
    public init(store: StateStore?, logger: Logger, capacity: Int = 10_000) {
        (wakeUps, wakeUp) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.store = store
        self.logger = logger
        self.capacity = capacity
    }

    /// Records an event; returns at once.
    public func record(_ event: JournalEvent) {
        let dropped = pending.withLock { queue in
            queue.append(event)
            guard queue.count > capacity else { return false }
            queue.removeFirst()
            return true
        }
        if dropped { logger.warning("journal queue full: dropped the oldest unwritten event") }
        wakeUp.yield()
    }

    /// Records an event happening now.
    public func record(_ kind: JournalEvent.Kind, node: String? = nil, actor: String = "balancer", _ message: String) {
        record(JournalEvent(at: Date(), kind: kind, node: node, actor: actor, message: message))
    }

    /// Writes queued events until `finish()`; what is queued by then is still written.
    public func run() async {
        for await _ in wakeUps {
            await flush()
        }
        await flush()
    }

    /// Writes everything queued so far.
    public func flush() async {
        let batch = pending.withLock { queue in
            defer { queue.removeAll(keepingCapacity: true) }
            return queue
        }
        guard let store, !batch.isEmpty else { return }
        do {
            try await store.append(batch)
        } catch {
            logger.error("cannot write to the journal", metadata: ["error": "\(error)", "events": "\(batch.count)"])
        }
    }

    /// Stops `run()` once the queue is written.
    public func finish() {
        wakeUp.finish()
    }
}
