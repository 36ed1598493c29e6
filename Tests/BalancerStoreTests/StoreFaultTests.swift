import BalancerCore
import BalancerTesting
import Foundation
import Logging
import Testing

@testable import BalancerStore

/// A state database whose files stop taking writes, as a full or failing disk makes them: the
/// store fails with errors (never a crash), says so, keeps what it could not write, and recovers.
@Suite(.timeLimit(.minutes(1)), .serialized)
struct StoreFaultTests {
    @Test func writesToImmutableFilesFailWithAnErrorAndTheStoreRecovers() async throws {
        let dir = try TemporaryDirectory()
        let path = dir.url.appendingPathComponent("state.sqlite").path
        let store = try StateStore(path: path)
        try await store.saveRun(UpdateRun())
        let files = try await StateFiles.makeImmutable(path)
        defer { StateFiles.release(files, dir) }

        await #expect(throws: (any Error).self) { try await store.saveRun(UpdateRun()) }
        await #expect(throws: (any Error).self) {
            try await store.append([JournalEvent(at: Date(), kind: .balancer, message: "x")])
        }
        let failing = store.condition
        #expect(!failing.ok)
        #expect(failing.error?.isEmpty == false)
        #expect(failing.since != nil)
        #expect(failing.failedWrites == 2)
        #expect(try await store.loadRun() != nil, "what was written stays readable")

        try await StateFiles.makeMutable(files)
        try await store.saveRun(UpdateRun())
        #expect(store.condition == StoreCondition(ok: true, failedWrites: 2))
    }

    @Test func theJournalKeepsEventsWhileTheStoreFailsAndWritesThemInOrderAfter() async throws {
        let dir = try TemporaryDirectory()
        let path = dir.url.appendingPathComponent("state.sqlite").path
        let store = try StateStore(path: path)
        let journal = Journal(
            store: store, logger: Logger(label: "test"), retry: (.milliseconds(20), .milliseconds(100)))
        let writer = Task { await journal.run() }
        journal.record(.balancer, "before")
        try await waitUntil("the first event is written") { journal.unwritten == 0 }
        let files = try await StateFiles.makeImmutable(path)
        defer { StateFiles.release(files, dir) }

        for index in 0..<20 { journal.record(.mode, node: "ums1", "while failing \(index)") }
        try await waitUntil("the store fails") { !store.condition.ok }
        try await Task.sleep(for: .milliseconds(300))
        #expect(journal.unwritten == 20, "nothing is lost while the store fails")

        try await StateFiles.makeMutable(files)
        try await waitUntil("the queue is written after the store recovered") { journal.unwritten == 0 }
        journal.finish()
        await writer.value
        let messages = try await store.events(limit: 100).map(\.message)
        #expect(messages == ["before"] + (0..<20).map { "while failing \($0)" })
        #expect(store.condition.ok)
    }

    @Test func aJournalFullWhileTheStoreFailsDropsTheOldestAndKeepsTheNewest() async throws {
        let dir = try TemporaryDirectory()
        let path = dir.url.appendingPathComponent("state.sqlite").path
        let store = try StateStore(path: path)
        try await store.saveRun(UpdateRun())
        let files = try await StateFiles.makeImmutable(path)
        defer { StateFiles.release(files, dir) }
        let journal = Journal(store: store, logger: Logger(label: "test"), capacity: 5)
        for index in 0..<12 { journal.record(.refusal, "refusal \(index)") }
        #expect(await journal.flush() == false)
        #expect(journal.unwritten == 5)
        try await StateFiles.makeMutable(files)
        #expect(await journal.flush())
        #expect(try await store.events(limit: 100).map(\.message) == (7..<12).map { "refusal \($0)" })
    }

    @Test func aSecondProcessOnTheSameFileIsRefusedAtStart() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.url.appendingPathComponent("state.sqlite").path
        let owner = try StateStore(path: path)
        #expect {
            _ = try StateStore(path: path)
        } throws: { error in
            "\(error)".contains("in use by another process")
        }
        withExtendedLifetime(owner) {}
    }

    @Test func theStoreNeverMapsSharedMemory() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.url.appendingPathComponent("state.sqlite").path
        let store = try StateStore(path: path)
        try await store.append([JournalEvent(at: Date(), kind: .balancer, message: "x")])
        #expect(!FileManager.default.fileExists(atPath: path + "-shm"), "a -shm file is what SIGBUS came from")
    }

    @Test func failuresAreSaidOnceThenAtASlowIntervalAndTheRecoveryOnce() {
        var health = StoreHealth()
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        #expect(health.failed("disk I/O error", at: start) == "state database cannot be written")
        for second in 1..<60 { #expect(health.failed("disk I/O error", at: start + Double(second)) == nil) }
        #expect(
            health.failed("disk I/O error", at: start + 60)
                == "state database still cannot be written (for 60s, 60 more failed writes)")
        #expect(health.condition.failedWrites == 61)
        #expect(health.condition.since == start)
        #expect(health.succeeded(at: start + 90) == "state database takes writes again after 90s")
        #expect(health.succeeded(at: start + 91) == nil)
        #expect(health.condition == StoreCondition(ok: true, failedWrites: 61))
    }

    func waitUntil(_ what: String, _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while !condition() {
            guard ContinuousClock.now < deadline else { throw TestKitError("never: \(what)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
