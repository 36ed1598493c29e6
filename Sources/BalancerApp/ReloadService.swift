import BalancerConfigFile
import BalancerCore
import BalancerNIO
import Logging
import ServiceLifecycle
import Synchronization
import UnixSignals

/// Reloads the configuration, one request at a time, whoever asks: SIGHUP or the admin API.
/// Each request gets the typed result of its own reload.
public final class ReloadService: Service, Sendable {
    /// Reads and applies the new configuration; says how it went.
    public typealias Reload = @Sendable (Balancer) async -> ReloadResult

    private let balancer: Balancer
    private let load: Reload
    private let around: ReloadHooks
    private let hangups: UnixSignalsSequence?
    private let logger: Logger
    /// One reload at a time, in the order asked.
    private let gate = SerialGate()
    /// Set at graceful shutdown: later requests are refused.
    private let closed = Atomic<Bool>(false)

    init(balancer: Balancer, load: @escaping Reload, around: ReloadHooks, hangups: UnixSignalsSequence?, logger: Logger)
    {
        self.balancer = balancer
        self.load = load
        self.around = around
        self.hangups = hangups
        self.logger = logger
    }

    /// Reloads once the reloads asked for before are done; `actor` says who asked.
    public func reload(actor: String) async -> ReloadResult {
        await gate.enter()
        let result =
            closed.load(ordering: .relaxed) ? .rejected("the balancer is shutting down") : await perform()
        await gate.leave()
        return result
    }

    /// Takes SIGHUP (when trapped) until graceful shutdown; from then on reloads are refused.
    public func run() async {
        if let hangups {
            await cancelWhenGracefulShutdown {
                for await _ in hangups {
                    self.logger.notice("SIGHUP: reloading the configuration")
                    _ = await self.reload(actor: "SIGHUP")
                }
            }
        } else {
            try? await gracefulShutdown()
        }
        closed.store(true, ordering: .relaxed)
    }

    private func perform() async -> ReloadResult {
        around.started()
        let result = await load(balancer)
        await around.finished(result)
        return result
    }

    /// Reads `path` (as `check-config` would), then applies it; a bad file or a failed bind
    /// leaves the running configuration in force.
    public static func fromFile(_ path: String, logger: Logger) -> Reload {
        { balancer in
            let checked: ConfigFile.Checked
            do throws(ConfigErrors) {
                checked = try ConfigFile.check(path: path)
            } catch {
                balancer.reloadRejected(error.description)
                return .rejected(error.description)
            }
            BalancerApp.log(checked.warnings, logger: logger)
            let configuration = checked.configuration
            do {
                try await balancer.reload(to: configuration)
                return .applied(generation: balancer.reloadStatus.generation)
            } catch {
                // reload(to:) has recorded and logged why; nothing changed.
                return .rejected("\(error)")
            }
        }
    }
}

/// What happens around each reload besides the configuration: systemd hears of it, the admin
/// token file is read again.
struct ReloadHooks: Sendable {
    var started: @Sendable () -> Void = {}
    var finished: @Sendable (ReloadResult) async -> Void = { _ in }
}
