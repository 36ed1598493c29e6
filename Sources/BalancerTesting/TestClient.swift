import NIOCore
import NIOPosix

/// Loopback client connections for tests, as async sequences of bytes.
public enum TestClient {
    public typealias Connection = NIOAsyncChannel<ByteBuffer, ByteBuffer>

    /// Connects to `address` (from `source`, a local address, if given); the outbound side can be
    /// half-closed with `finish()`.
    public static func connect(
        to address: SocketAddress,
        from source: SocketAddress? = nil,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> Connection {
        var bootstrap = ClientBootstrap(group: group).channelOption(.allowRemoteHalfClosure, value: true)
        if let source { bootstrap = bootstrap.bind(to: source) }
        return
            try await bootstrap
            .connect(to: address) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try Connection(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(isOutboundHalfClosureEnabled: true)
                    )
                }
            }
    }

    /// Closes a connection that was used without `executeThenClose`.
    public static func close(_ connection: Connection) async {
        connection.outbound.finish()
        try? await connection.channel.close()
    }

    /// Reads until the peer closes or `limit` bytes arrived; returns everything read.
    public static func readAll(
        _ inbound: NIOAsyncChannelInboundStream<ByteBuffer>,
        limit: Int = .max
    ) async throws -> ByteBuffer {
        var received = ByteBuffer()
        for try await var chunk in inbound {
            received.writeBuffer(&chunk)
            if received.readableBytes >= limit { break }
        }
        return received
    }

    /// Writes `bytes` in 256 KiB pieces, then half-closes, while reading everything the peer sends
    /// back until it closes (so neither side's buffers stall the other); closes the connection and
    /// returns what was read.
    public static func sendAllWhileReading(_ bytes: ByteBuffer, on connection: Connection) async throws -> ByteBuffer {
        try await connection.executeThenClose { inbound, outbound in
            try await withThrowingTaskGroup(of: ByteBuffer?.self) { tasks in
                tasks.addTask {
                    var rest = bytes
                    while let chunk = rest.readSlice(length: min(256 * 1024, rest.readableBytes)),
                        chunk.readableBytes > 0
                    {
                        try await outbound.write(chunk)
                    }
                    outbound.finish()
                    return nil
                }
                tasks.addTask { try await readAll(inbound) }
                var received = ByteBuffer()
                for try await result in tasks { if let result { received = result } }
                return received
            }
        }
    }

    /// Reads from an iterator already in use until the peer closes; returns everything read.
    public static func readRest(
        _ iterator: inout NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    ) async throws -> ByteBuffer {
        var received = ByteBuffer()
        while var chunk = try await iterator.next() { received.writeBuffer(&chunk) }
        return received
    }

    /// Connects to `address`, reads the first line (a node's greeting; nil if closed first), then
    /// half-closes and closes.
    public static func greeting(from address: SocketAddress) async throws -> String? {
        let connection = try await connect(to: address)
        return try await connection.executeThenClose { inbound, outbound in
            var iterator = inbound.makeAsyncIterator()
            let line = try await readLine(&iterator)
            outbound.finish()
            return line
        }
    }

    /// Reads one `\n`-terminated line (without the newline), or nil if the peer closed first.
    public static func readLine(
        _ iterator: inout NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    ) async throws -> String? {
        var line = ""
        while let chunk = try await iterator.next() {
            line += String(buffer: chunk)
            if line.hasSuffix("\n") { return String(line.dropLast()) }
        }
        return nil
    }
}
