import BalancerCore
import BalancerStore
import BalancerTesting
import Foundation
import Logging
import Testing

@Suite(.timeLimit(.minutes(1)))
struct StateStoreTests {
    @Test func aSavedRunIsThereAfterReopening() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.url.appendingPathComponent("state/balancer.sqlite").path
        var run = UpdateRun()
        run.state = .reconnecting
        run.targetVersion = "12.07.100"
        run.updated = 3
        run.total = 3
        run.startedAt = Date(timeIntervalSince1970: 1_800_000_000)
        var reconnect = NodeReconnect(phase: .waiting, drainStartedAt: Date(timeIntervalSince1970: 1_800_000_100))
        reconnect.attempts = 1
        run.reconnects["ums1"] = reconnect
        do {
            let store = try StateStore(path: path)
            #expect(try await store.loadRun() == nil)
            try await store.saveRun(run)
        }
        let reopened = try StateStore(path: path)
        #expect(try await reopened.loadRun() == run)
    }

    @Test func theJournalKeepsEventsInOrder() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = try StateStore(path: dir.url.appendingPathComponent("j.sqlite").path)
        let journal = Journal(store: store, logger: Logger(label: "test"))
        let writer = Task { await journal.run() }
        for index in 0..<50 { journal.record(.mode, node: "ums\(index % 3)", "event \(index)") }
        journal.record(.admin, node: "ums1", actor: "admin-api 127.0.0.1", "drained")
        journal.finish()
        await writer.value
        let events = try await store.events(limit: 1000)
        #expect(events.map(\.message) == (0..<50).map { "event \($0)" } + ["drained"])
        #expect(events.last?.actor == "admin-api 127.0.0.1")
        let recent = try await store.events(limit: 3)
        #expect(recent.map(\.message) == ["event 48", "event 49", "drained"])
        let newer = try await store.events(after: events[49].id)
        #expect(newer.map(\.message) == ["drained"])
    }

    @Test func aFloodedJournalDropsTheOldestInsteadOfGrowing() async throws {
        let journal = Journal(store: nil, logger: Logger(label: "test"), capacity: 10)
        for index in 0..<1_000 { journal.record(.refusal, "refusal \(index)") }
        journal.finish()
        await journal.run()
    }

    @Test func aCorruptFileIsAClearErrorNotACrash() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = try dir.write("broken.sqlite", String(repeating: "this is not a database ", count: 400))
        #expect {
            _ = try StateStore(path: path)
        } throws: { error in
            "\(error)".contains("is damaged or not a database")
        }
    }

    @Test func anUnwritablePlaceIsAClearError() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let blocker = try dir.write("file", "x")
        #expect {
            _ = try StateStore(path: blocker + "/state.sqlite")
        } throws: { error in
            "\(error)".hasPrefix("state database \(blocker)/state.sqlite: cannot open")
        }
    }
}
