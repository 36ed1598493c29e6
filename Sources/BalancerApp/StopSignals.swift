import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import UnixSignals

/// SIGTERM and SIGINT, as a `Service`: the first starts the group's graceful shutdown (listeners
/// stop accepting, connections get `shutdown_grace`); a second, while that runs, ends the wait:
/// the service throws, and the group cancels every service, closing what is still open at once.
/// It is the first service of the group, so it is shut down last and hears a second signal
/// whenever it comes.
struct StopSignals: Service {
    /// Thrown on the second signal, so the group cancels its services; the process still exits 0.
    struct SecondSignal: Error {}

    let signals: UnixSignalsSequence
    let group: ServiceGroupReference
    let stopping: @Sendable () -> Void
    let logger: Logger

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            var stops = 0
            for await signal in signals {
                stops += 1
                if stops == 1 {
                    logger.notice("signal received: shutting down gracefully", metadata: ["signal": "\(signal)"])
                    stopping()
                    await group.triggerGracefulShutdown()
                } else {
                    logger.warning("second signal: exiting at once", metadata: ["signal": "\(signal)"])
                    throw SecondSignal()
                }
            }
        }
    }
}

/// The group a service belongs to, known once the group is made (it is made from its services).
final class ServiceGroupReference: Sendable {
    private let group = NIOLockedValueBox<ServiceGroup?>(nil)

    func set(_ group: ServiceGroup) {
        self.group.withLockedValue { $0 = group }
    }

    func triggerGracefulShutdown() async {
        await group.withLockedValue { $0 }?.triggerGracefulShutdown()
    }
}
