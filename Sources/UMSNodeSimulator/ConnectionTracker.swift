import NIOCore

/// The accepted connections of one listening period, so that going down can close them gracefully.
final class ConnectionTracker: Sendable {
    private struct State {
        var channels: [ObjectIdentifier: any Channel] = [:]
        var goingDown = false
    }

    private let state = Locked(State())

    /// Tracks a new connection; false if the server is already going down.
    func add(_ channel: any Channel) -> Bool {
        let key = ObjectIdentifier(channel)
        let accepted = state.withLock { state in
            guard !state.goingDown else { return false }
            state.channels[key] = channel
            return true
        }
        if accepted {
            channel.closeFuture.whenComplete { _ in
                self.state.withLock { _ = $0.channels.removeValue(forKey: key) }
            }
        }
        return accepted
    }

    /// Tells every connection to finish its request in flight and close.
    func goDown() {
        let channels = state.withLock { state in
            state.goingDown = true
            return Array(state.channels.values)
        }
        for channel in channels {
            channel.pipeline.fireUserInboundEventTriggered(GoingDownEvent())
        }
    }

    /// Waits until every connection is closed, closing the stragglers after `timeout`.
    func waitUntilClosed(timeout: Duration) async {
        let channels = state.withLock { Array($0.channels.values) }
        guard !channels.isEmpty else { return }
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for channel in channels { try? await channel.closeFuture.get() }
                return true
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let allClosed = await group.next() ?? true
            if !allClosed {
                for channel in channels { channel.close(promise: nil) }
            }
            group.cancelAll()
        }
    }
}
