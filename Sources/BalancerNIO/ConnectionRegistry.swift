import NIOConcurrencyHelpers
import NIOCore

/// Every client connection the balancer holds, so shutdown can wait for them and close the rest.
public final class ConnectionRegistry: Sendable {
    private let channels = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])

    public init() {}

    /// Tracks `channel` until it closes.
    func register(_ channel: any Channel) {
        let key = ObjectIdentifier(channel)
        channels.withLockedValue { $0[key] = channel }
        channel.closeFuture.whenComplete { [channels] _ in
            channels.withLockedValue { _ = $0.removeValue(forKey: key) }
        }
    }

    /// Connections currently open.
    public var count: Int {
        channels.withLockedValue { $0.count }
    }

    /// Waits until no connection is open or `deadline` passes; true when none is left.
    public func waitUntilEmpty(deadline: ContinuousClock.Instant) async -> Bool {
        while count > 0 {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return true
    }

    /// Closes every open connection at once (the access log says `shutdown`).
    public func closeAll() {
        for channel in channels.withLockedValue({ Array($0.values) }) {
            channel.pipeline.fireUserInboundEventTriggered(ConnectionGuard.ShutdownEvent())
            channel.close(promise: nil)
        }
    }
}
