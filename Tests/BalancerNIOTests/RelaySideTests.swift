#if os(Linux)
import Glibc
import Testing

@testable import BalancerRelay

/// One socket of the relay: what it keeps when its peer cannot take more, and how
/// large its reads get.
struct RelaySideTests {
    @Test func aSocketThatCannotTakeMoreKeepsTheRestAndWritesItInOrderLater() throws {
        var fds: [CInt] = [0, 0]
        #expect(socketpair(AF_UNIX, CInt(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue), 0, &fds) == 0)
        defer {
            close(fds[0])
            close(fds[1])
        }
        let side = RelaySide(fd: fds[0], connected: true)
        let sent = (0..<(1024 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let accepted = sent.withUnsafeBytes { side.send($0.baseAddress!, count: $0.count) }
        #expect(accepted)
        #expect(side.hasPending, "a megabyte does not fit a socket buffer")

        let received = side.flushReading(fds[1], expecting: sent.count)
        #expect(!side.hasPending)
        #expect(received == sent)
    }

    @Test func aWriteToAClosedPeerFailsWithoutASignal() {
        var fds: [CInt] = [0, 0]
        #expect(socketpair(AF_UNIX, CInt(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue), 0, &fds) == 0)
        close(fds[1])
        defer { close(fds[0]) }
        let side = RelaySide(fd: fds[0], connected: true)
        let bytes: [UInt8] = [1, 2, 3]
        // Without MSG_NOSIGNAL this would raise SIGPIPE and end the test process.
        let accepted = bytes.withUnsafeBytes { side.send($0.baseAddress!, count: $0.count) }
        #expect(!accepted)
        #expect(side.failure == EPIPE)
    }

    @Test func readsGrowWhileThePartnerKeepsUpAndShrinkWhenItStalls() {
        let side = RelaySide(fd: -1, connected: true)
        let limit = 256 * 1024
        #expect(side.readSize == RelaySide.smallestRead)
        // A short read (a device's request) changes nothing.
        side.adjustReadSize(read: 300, asked: side.readSize, allSent: true, limit: limit)
        #expect(side.readSize == RelaySide.smallestRead)
        // Full reads that all went out: a bulk transfer, so fewer, larger reads.
        for _ in 0..<10 { side.adjustReadSize(read: side.readSize, asked: side.readSize, allSent: true, limit: limit) }
        #expect(side.readSize == limit)
        // The partner stalls: what a stalled connection may hold shrinks back.
        for _ in 0..<10 { side.adjustReadSize(read: side.readSize, asked: side.readSize, allSent: false, limit: limit) }
        #expect(side.readSize == RelaySide.smallestRead)
    }
}

extension RelaySide {
    /// Flushes while the test reads the socket's peer `fd`, until `count` bytes arrived (at most
    /// 10 s); every flush must succeed. Returns what was read.
    func flushReading(_ fd: Int32, expecting count: Int) -> [UInt8] {
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let deadline = ContinuousClock.now + .seconds(10)
        while received.count < count, ContinuousClock.now < deadline {
            let read = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if read > 0 { received.append(contentsOf: chunk[..<read]) }
            #expect(flush())
        }
        return received
    }
}
#endif

#if os(Linux)
import BalancerDataPath
import Logging

/// The relay loop's own bookkeeping, apart from any connection.
struct RelayLoopTests {
    let logger = Logger(label: "relay-loop-tests")

    @Test func forgettingASocketThatWasNeverWatchedIsHarmless() async throws {
        // A node socket whose connect fails at once is closed before it is ever watched; its
        // descriptor number may lie beyond anything the loop has seen.
        let loop = try RelayLoop(name: "test-relay", logger: logger, budget: DescriptorBudget(capacity: 64))
        let watchedNothing = await loop.submit {
            loop.forget(100_000)
            return true
        }
        #expect(watchedNothing)
        await loop.stop()
    }

    @Test func aTaskSentAfterTheLoopStoppedStillRuns() async throws {
        let loop = try RelayLoop(name: "test-relay", logger: logger, budget: DescriptorBudget(capacity: 64))
        await loop.stop()
        // A reload that closes a listener while the balancer shuts down must not hang.
        let ran = await loop.submit { true }
        #expect(ran)
        await loop.stop()
    }
}
#endif
