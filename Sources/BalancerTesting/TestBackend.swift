import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A stand-in for a UMS Server port on loopback: accepts connections and plays one behaviour.
public final class TestBackend: Sendable {
    /// What the backend does with each connection.
    public enum Behavior: Sendable, Equatable {
        /// Sends its name and a newline, then echoes everything back; closes once the client has half-closed and all is echoed.
        case greetThenEcho
        /// Echoes everything back; closes once the client has half-closed and all is echoed.
        case echo
        /// Reads until the client half-closes, then sends `size` bytes of `pattern(i)` and closes.
        case answerAfterEOF(size: Int)
        /// On the first byte from the client, writes `size` bytes as fast as the connection takes
        /// them, then closes (health probes, which send nothing, get nothing).
        case firehose(size: Int)
        /// Accepts, then closes at once without reading or answering (a server going down).
        case closeAtOnce
        /// Accepts and never reads or closes (a hung server whose socket buffers fill up).
        case neverReads
        /// Closes without a byte on the client's first bytes (a TLS port handed something that is
        /// not TLS).
        case closeOnFirstBytes
        /// Answers the first bytes with a line `segments N`: how many TCP segments the connection
        /// had brought in by then (Linux's `tcpi_segs_in`: the SYN, the handshake's last ACK, the
        /// bytes); then echoes like `echo`.
        case countSegmentsThenEcho
    }

    public let name: String
    public let address: SocketAddress
    private let channel: any Channel
    private let stats = NIOLockedValueBox(Stats())

    private struct Stats {
        var accepted = 0
        var active = 0
        var bytesWritten = 0
    }

    private init(name: String, channel: any Channel) throws {
        self.name = name
        self.channel = channel
        guard let address = channel.localAddress else { throw TestKitError("backend \(name) has no address") }
        self.address = address
    }

    /// Starts a backend named `name` on `host:port` (port 0: any free one).
    public static func start(
        name: String,
        host: String = "127.0.0.1",
        port: Int = 0,
        behavior: Behavior,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> TestBackend {
        let box = NIOLockedValueBox<TestBackend?>(nil)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.autoRead, value: behavior != .neverReads)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    guard let backend = box.withLockedValue({ $0 }) else { throw TestKitError("backend not ready") }
                    backend.stats.withLockedValue {
                        $0.accepted += 1
                        $0.active += 1
                    }
                    child.closeFuture.whenComplete { _ in backend.stats.withLockedValue { $0.active -= 1 } }
                    try child.pipeline.syncOperations.addHandler(
                        BackendHandler(
                            name: name, behavior: behavior,
                            written: { count in
                                backend.stats.withLockedValue { $0.bytesWritten += count }
                            }))
                }
            }
            .bind(host: host, port: port).get()
        let backend = try TestBackend(name: name, channel: channel)
        box.withLockedValue { $0 = backend }
        return backend
    }

    /// The port the backend listens on.
    public var port: Int { address.port ?? 0 }
    /// Connections accepted so far.
    public var accepted: Int { stats.withLockedValue { $0.accepted } }
    /// Connections open right now.
    public var active: Int { stats.withLockedValue { $0.active } }
    /// Bytes the kernel has taken from this backend so far.
    public var bytesWritten: Int { stats.withLockedValue { $0.bytesWritten } }

    /// Stops listening (open connections stay).
    public func stop() async {
        try? await channel.close()
    }

    /// The TCP segments `channel`'s socket has received so far (Linux; nil elsewhere or on error).
    static func segmentsIn(_ channel: any Channel) -> UInt32? {
        #if os(Linux)
        guard let provider = channel as? any SocketOptionProvider else { return nil }
        let info: EventLoopFuture<LinuxTCPInfoHead> = provider.unsafeGetSocketOption(level: .tcp, name: .tcp_info)
        // On the channel's own loop the option is read at once.
        var segments: UInt32?
        info.whenSuccess { segments = $0.segmentsIn }
        return segments
        #else
        return nil
        #endif
    }

    /// The byte at offset `index` of every test payload: position-dependent so reordering shows.
    public static func pattern(_ index: Int) -> UInt8 {
        UInt8(truncatingIfNeeded: (index &* 31) ^ (index >> 11))
    }

    /// `size` bytes of the test pattern starting at `offset`.
    public static func payload(size: Int, offset: Int = 0) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(size)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { pointer in
            for i in 0..<size { pointer[i] = pattern(offset + i) }
            return size
        }
        return buffer
    }
}

/// The per-connection side of `TestBackend`.
private final class BackendHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let name: String
    private let behavior: TestBackend.Behavior
    private let written: @Sendable (Int) -> Void
    private var remaining = 0
    private var offset = 0
    private var counted = false

    init(name: String, behavior: TestBackend.Behavior, written: @escaping @Sendable (Int) -> Void) {
        self.name = name
        self.behavior = behavior
        self.written = written
    }

    func channelActive(context: ChannelHandlerContext) {
        switch behavior {
        case .greetThenEcho:
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: name + "\n")), promise: nil)
        case .firehose:
            break
        case .closeAtOnce:
            context.close(promise: nil)
        case .echo, .answerAfterEOF, .neverReads, .countSegmentsThenEcho, .closeOnFirstBytes:
            break
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch behavior {
        case .echo, .greetThenEcho:
            context.write(data, promise: nil)
        case .countSegmentsThenEcho:
            if !counted {
                counted = true
                let line = "segments \(TestBackend.segmentsIn(context.channel).map(String.init) ?? "unknown")\n"
                context.write(wrapOutboundOut(ByteBuffer(string: line)), promise: nil)
            }
            context.write(data, promise: nil)
        case .firehose(let size):
            if remaining == 0 && offset == 0 {
                remaining = size
                pump(context: context)
            }
        case .closeOnFirstBytes:
            context.close(promise: nil)
        case .answerAfterEOF, .closeAtOnce, .neverReads:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if case .firehose = behavior { pump(context: context) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let event = event as? ChannelEvent, event == .inputClosed else { return }
        switch behavior {
        case .echo, .greetThenEcho, .countSegmentsThenEcho:
            // NIO turns an output close on a channel whose input is gone into a full close that drops
            // the writes still queued: close only once the echo of everything read is out.
            context.writeAndFlush(wrapOutboundOut(ByteBuffer())).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        case .answerAfterEOF(let size):
            let answer = TestBackend.payload(size: size)
            let written = self.written
            context.writeAndFlush(wrapOutboundOut(answer)).assumeIsolated().whenComplete { _ in
                written(size)
                context.close(promise: nil)
            }
        case .firehose, .closeAtOnce, .neverReads, .closeOnFirstBytes:
            break
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// Writes while the channel is writable, in 64 KiB chunks, so the kernel sets the pace.
    private func pump(context: ChannelHandlerContext) {
        while remaining > 0 && context.channel.isWritable {
            let size = min(65_536, remaining)
            let chunk = TestBackend.payload(size: size, offset: offset)
            remaining -= size
            offset += size
            let written = self.written
            context.writeAndFlush(wrapOutboundOut(chunk)).whenSuccess { written(size) }
        }
        if remaining == 0 {
            remaining = -1
            context.writeAndFlush(wrapOutboundOut(ByteBuffer())).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        }
    }
}

@available(*, unavailable)
extension BackendHandler: Sendable {}

#if os(Linux)
/// The head of Linux's `struct tcp_info`, up to `tcpi_segs_in` (glibc's copy of the struct ends
/// before it): 136 bytes of fields this kit does not read, then the segment counters.
struct LinuxTCPInfoHead {
    var skipped:
        (
            UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
            UInt64, UInt64, UInt64, UInt64
        )
    var segmentsOut: UInt32
    var segmentsIn: UInt32
}
#endif
