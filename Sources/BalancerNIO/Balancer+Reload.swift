import BalancerCore
import Foundation
import Logging
import Metrics

/// How the last reload went: `{ok, at, error}` in the admin API.
public struct ReloadReport: Sendable, Hashable {
    public var ok: Bool
    public var at: Date
    /// `FILE:LINE:COL: message` lines of a rejected configuration, or why applying it failed.
    public var error: String?

    public init(ok: Bool, at: Date, error: String?) {
        self.ok = ok
        self.at = at
        self.error = error
    }
}

/// How one reload ended.
public enum ReloadResult: Sendable, Hashable {
    /// The new configuration is in force, as generation `generation`.
    case applied(generation: Int)
    /// Nothing changed: the new file is invalid (`FILE:LINE:COL: ...` lines) or could not be applied.
    case rejected(String)
}

extension Balancer {
    /// The configuration generation (1 at start, +1 per accepted reload) and the last reload's result.
    public var reloadStatus: (generation: Int, lastReload: ReloadReport) {
        state.withLockedValue { ($0.generation, $0.lastReload) }
    }

    /// Records a configuration that failed validation; the running one stays untouched.
    public func reloadRejected(_ error: String) {
        state.withLockedValue { $0.lastReload = ReloadReport(ok: false, at: clock.now(), error: error) }
        Counter(label: "ums_balancer_reloads_total", dimensions: [("result", "rejected")]).increment()
        // One log line per event: the problems are joined; the admin API keeps one per line.
        let oneLine = error.split(separator: "\n").joined(separator: "; ")
        logger.error("reload rejected: the running configuration stays", metadata: ["error": "\(oneLine)"])
        journal.record(.reload, "rejected: \(error)")
    }

    /// Applies a validated configuration as one step: new listeners bind first, and if one cannot,
    /// nothing changes. Kept listeners keep their sockets and connections, removed ones stop
    /// accepting and drain, and node state (health, mode, admin, update run) carries over.
    ///
    /// Reloads run one at a time (SIGHUP and the admin API may ask at once): each is computed
    /// against the configuration the one before it applied.
    @discardableResult
    public func reload(to new: BalancerConfiguration) async throws -> ConfigurationDiff {
        await reloadGate.enter()
        do {
            let diff = try await reloadNow(to: new)
            await reloadGate.leave()
            return diff
        } catch {
            await reloadGate.leave()
            throw error
        }
    }

    private func reloadNow(to new: BalancerConfiguration) async throws -> ConfigurationDiff {
        let old = configuration
        let diff = ConfigurationDiff(from: old, to: new)
        var applied = new
        // Settings a restart applies stay as they run, so what status shows is what is in force.
        applied.threads = old.threads
        applied.state = old.state
        applied.admin = old.admin

        let opening = diff.addedListeners + diff.reboundListeners.map(\.new)
        let bound: [String: ListenerRuntime]
        do {
            bound = try await bindListeners(opening, of: applied)
        } catch {
            reloadRejected("\(error)")
            throw error
        }
        let retiring = state.withLockedValue { state -> (removed: [ListenerRuntime], rebound: [ListenerRuntime]) in
            let removed = diff.removedListeners.compactMap { state.listeners.removeValue(forKey: $0.name) }
            let rebound = diff.reboundListeners.compactMap { state.listeners.removeValue(forKey: $0.old.name) }
            state.listeners.merge(bound) { $1 }
            state.configuration = applied
            state.generation += 1
            state.lastReload = ReloadReport(ok: true, at: clock.now(), error: nil)
            return (removed, rebound)
        }
        for listener in applied.listeners where bound[listener.name] == nil {
            let context = makeContext(listener, of: applied)
            listenerRuntime(listener.name)?.replaceContext(context)
        }
        directory.replaceNodes(
            applied.nodes, consolePolicy: applied.update.console, readdressed: Set(diff.changedNodes.map(\.id))
        ) { _ in Self.initialObservation(applied) }
        configureLimits(applied)
        if diff.probingChanged { probes.reconfigure(applied) }
        await coordinator.reconfigure(applied)
        await coordinator.nodesChanged()

        for listener in opening { logListening(listener) }
        for runtime in retiring.rebound { await runtime.socket.close() }
        for runtime in retiring.removed {
            await runtime.socket.close()
            // Keep-alive connections take no new request on a listener that is gone.
            runtime.connections.quiesceAll()
            retirements.continuation.yield(runtime)
        }

        let generation = reloadStatus.generation
        logger.notice(
            "configuration reloaded", metadata: ["generation": "\(generation)", "changes": "\(diff.summary)"])
        if !diff.needsRestart.isEmpty {
            logger.warning(
                "some changes apply only after a restart",
                metadata: ["keys": "\(diff.needsRestart.joined(separator: ", "))"])
        }
        journal.record(.reload, "generation \(generation): \(diff.summary)")
        Counter(label: "ums_balancer_reloads_total", dimensions: [("result", "applied")]).increment()
        return diff
    }

    /// Lets the connections of a removed listener (no longer accepting) finish within the drain
    /// timeout, then closes the rest. Graceful shutdown cancels the wait: shutdown drains every connection.
    func retire(_ runtime: ListenerRuntime) async {
        let drainTimeout = configuration.update.drainTimeout
        if await !runtime.connections.waitUntilEmpty(deadline: .now + drainTimeout), !Task.isCancelled {
            logger.notice(
                "removed listener: closing connections still open at the drain timeout",
                metadata: ["connections": "\(runtime.connections.count)"])
            runtime.connections.closeAll()
        }
    }
}

/// Lets one task at a time through, in the order they arrived.
public actor SerialGate {
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    public init() {}

    /// Returns when the task may go through; `leave()` lets the next one in.
    public func enter() async {
        guard busy else {
            busy = true
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    /// The task that entered is done.
    public func leave() {
        if waiting.isEmpty {
            busy = false
        } else {
            waiting.removeFirst().resume()
        }
    }
}
