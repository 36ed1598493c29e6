import BalancerStore
import ServiceLifecycle

/// Writes the journal to the state database until graceful shutdown; what is queued by then is
/// still written. Last of the balancer's services to stop, so the others' last events get written.
struct JournalWriter: Service {
    let journal: Journal

    func run() async {
        await withGracefulShutdownHandler {
            await journal.run()
        } onGracefulShutdown: {
            journal.finish()
        }
    }
}

/// Stops the relay's threads (started by the first relayed listener) once the connections they
/// carried are gone: it is shut down after the listeners.
struct RelayService: Service {
    let balancer: Balancer

    func run() async {
        try? await gracefulShutdown()
        await balancer.stopRelayLoops()
    }
}

/// Ticks the update coordinator (drains, retries, deadlines) until graceful shutdown.
struct CoordinatorService: Service {
    let coordinator: UpdateCoordinator

    init(_ coordinator: UpdateCoordinator) {
        self.coordinator = coordinator
    }

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown { try await coordinator.run() }
        } catch is CancellationError {
            // Graceful shutdown (or the group's cancellation) ended the ticks.
        }
    }
}
