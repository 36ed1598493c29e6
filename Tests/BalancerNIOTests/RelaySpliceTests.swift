#if os(Linux)
import BalancerCore
import BalancerDataPath
import BalancerStore
import BalancerTesting
import Glibc
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import BalancerRelay

/// The relay's splice(2) path (`UMS_BALANCER_SPLICE`): bytes moved through kernel pipes once a
/// direction has moved more than the threshold, with everything else as on the copying path.
@Suite(.timeLimit(.minutes(1)))
struct RelaySpliceTests {
    @Test func eightMebibytesEachWayArriveByteIdenticalThroughPipes() async throws {
        let cluster = try await BackendCluster.start([.echo])
        let logs = LogCapture()
        let relay = try await SplicingRelay.start(to: cluster, logs: logs)
        let size = 8 * 1024 * 1024
        let sent = TestBackend.payload(size: size)
        let connection = try await TestClient.connect(to: try #require(relay.listener.localAddress))
        let received = try await TestClient.sendAllWhileReading(sent, on: connection)
        #expect(received.readableBytes == size)
        #expect(received == sent)
        let spliced = await relay.bytesSpliced()
        // Both directions pass the threshold early: most of the 16 MiB never entered user space.
        #expect(spliced > size, "spliced \(spliced) bytes")
        await relay.stop()
        let line = try #require(logs.records("connection").first)
        #expect(line.metadata["bytes_in"] == "\(size)")
        #expect(line.metadata["bytes_out"] == "\(size)")
        #expect(line.metadata["outcome"] == "closed")
        await cluster.stop()
    }

    @Test func aHalfClosedClientStillReceivesTheNodesFullAnswerThroughPipes() async throws {
        let answerSize = 4 * 1024 * 1024
        let cluster = try await BackendCluster.start([.answerAfterEOF(size: answerSize)])
        let logs = LogCapture()
        let relay = try await SplicingRelay.start(to: cluster, logs: logs)
        let connection = try await TestClient.connect(to: try #require(relay.listener.localAddress))
        let answer = try await connection.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "GET /device/00E0C5000001/profile"))
            outbound.finish()
            return try await TestClient.readAll(inbound)
        }
        #expect(answer == TestBackend.payload(size: answerSize))
        #expect(await relay.bytesSpliced() > 0)
        await relay.stop()
        await cluster.stop()
    }

    @Test func aShortExchangeStaysBelowTheThresholdAndTakesNoPipe() async throws {
        let cluster = try await BackendCluster.start([.echo])
        let logs = LogCapture()
        let relay = try await SplicingRelay.start(to: cluster, logs: logs)
        let connection = try await TestClient.connect(to: try #require(relay.listener.localAddress))
        let answer = try await connection.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "a device's short request"))
            outbound.finish()
            return String(buffer: try await TestClient.readAll(inbound))
        }
        #expect(answer == "a device's short request")
        #expect(await relay.bytesSpliced() == 0)
        await relay.stop()
        await cluster.stop()
    }

    @Test(arguments: [
        (nil, SpliceSettings.Choice.off), ("", .off), ("off", .off), ("0", .off),
        ("auto", .on(SpliceSettings())), ("AUTO", .on(SpliceSettings())),
        ("65536", .on(SpliceSettings(threshold: 65_536))), ("lots", .notUnderstood("lots")),
        ("-5", .notUnderstood("-5")),
    ])
    func theVariableTurnsSplicingOnOnlyWhenItSaysSo(_ value: String?, _ expected: SpliceSettings.Choice) {
        #expect(SpliceSettings.choice(value) == expected)
    }

    @Test func bytesASocketCannotTakeWaitInThePipeAndLeaveInOrder() throws {
        var fds: [CInt] = [0, 0]
        #expect(socketpair(AF_UNIX, CInt(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue), 0, &fds) == 0)
        defer {
            close(fds[0])
            close(fds[1])
        }
        let pipe = try #require(SplicePipe.make(size: 1024 * 1024))
        defer { pipe.close() }
        let sent = (0..<(512 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let filled = sent.withUnsafeBytes { write(pipe.writeEnd, $0.baseAddress, $0.count) }
        #expect(filled == sent.count)
        pipe.count = filled
        let side = RelaySide(fd: fds[0], connected: true)
        side.pipe = pipe
        #expect(side.flush())
        #expect(side.hasPending, "half a megabyte does not fit a socket buffer")

        let received = side.flushReading(fds[1], expecting: sent.count)
        #expect(!side.hasPending)
        #expect(received == sent)
    }
}

/// One relay loop with splicing on from 64 KiB, and a device listener to `cluster`'s first node.
struct SplicingRelay {
    let loops: RelayLoops
    let listener: RelayListener

    static func start(to cluster: BackendCluster, logs: LogCapture) async throws -> SplicingRelay {
        let configuration = ListenerConfiguration(
            name: "devices", bind: Endpoint(host: "127.0.0.1", port: 0), backendPort: cluster.port,
            classification: .fixed(.device))
        let directory = NodeDirectory(nodes: cluster.nodes, consolePolicy: .normalOnly) { _ in
            NodeObservation(health: .up, mode: .normal)
        }
        let context = ListenerContext(
            configuration: configuration, directory: directory, timeouts: TimeoutSettings(),
            accessLogger: logs.logger(label: "access"), journal: Journal(store: nil, logger: logs.logger()),
            metrics: ListenerMetrics(listener: "devices"))
        let loops = try RelayLoops(
            count: 1, logger: logs.logger(), budget: DescriptorBudget(capacity: 1024),
            splice: .on(SpliceSettings(threshold: 64 * 1024, pipeSize: 64 * 1024)))
        let registry = ConnectionRegistry()
        let listener = try await RelayListener.open(
            try SocketAddress(ipAddress: "127.0.0.1", port: 0), name: "devices", context: NIOLockedValueBox(context),
            key: registry.newListenerKey(), registry: registry, loops: loops)
        return SplicingRelay(loops: loops, listener: listener)
    }

    /// Bytes the loop moved through pipes so far.
    func bytesSpliced() async -> Int {
        let loop = loops.loops[0]
        return await loop.submit { loop.splice?.bytesSpliced ?? 0 }
    }

    func stop() async {
        await listener.close()
        await loops.stop()
    }
}
#endif
