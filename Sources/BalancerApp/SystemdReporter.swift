import BalancerCore
import BalancerNIO
import Foundation
import Logging
import NIOCore
import ServiceLifecycle

/// What the running balancer tells systemd: `READY=1` once the listeners are open, a `STATUS=`
/// line with the update's progress whenever it changes, `WATCHDOG=1` while the event loops answer,
/// `RELOADING=1` / `READY=1` around a reload and `STOPPING=1` at shutdown.
struct SystemdReporter: Service {
    let notifier: SystemdNotifier
    let balancer: Balancer
    let group: any EventLoopGroup
    let logger: Logger

    /// Until graceful shutdown: waits for the listeners, says READY, then keeps STATUS and the
    /// watchdog fed (it stops late: systemd keeps hearing from a balancer that is draining).
    func run() async {
        await cancelWhenGracefulShutdown { await report() }
    }

    private func report() async {
        notifier.notify(["STATUS=starting: probing the nodes before the listeners open"])
        do {
            try await balancer.listening.get()
        } catch {
            return  // A failed start exits non-zero; systemd sees that.
        }
        var shown = await statusLine()
        notifier.notify(["READY=1", "STATUS=\(shown)", "MAINPID=\(getpid())"])
        logger.info("systemd: ready", metadata: ["watchdog": "\(notifier.watchdogInterval.map { "\($0)" } ?? "off")"])
        // The watchdog wants a sign at least every interval: half of it leaves room for a slow tick.
        let tick = notifier.watchdogInterval.map { min($0 / 2, .seconds(1)) } ?? .seconds(1)
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: tick)
            } catch {
                return
            }
            var fields: [String] = []
            let line = await statusLine()
            if line != shown {
                fields.append("STATUS=\(line)")
                shown = line
            }
            // A stuck event loop never runs the no-op: the watchdog then fires and systemd restarts us.
            if notifier.watchdogInterval != nil, await eventLoopsAnswer() { fields.append("WATCHDOG=1") }
            if !fields.isEmpty { notifier.notify(fields) }
        }
    }

    /// At a reload's start: systemd shows "reloading" until `reloadFinished()`.
    func reloadStarted() {
        notifier.notify(["RELOADING=1", "MONOTONIC_USEC=\(SystemdNotifier.monotonicMicroseconds())"])
    }

    /// At a reload's end, accepted or rejected (the STATUS line says which). A reload before the
    /// listeners opened says no READY: `run()` does, once they are.
    func reloadFinished() async {
        let line = await statusLine()
        notifier.notify(balancer.isServing ? ["READY=1", "STATUS=\(line)"] : ["STATUS=\(line)"])
    }

    /// At the start of a graceful shutdown.
    func stopping() {
        notifier.notify(["STOPPING=1", "STATUS=shutting down: stopped accepting, connections finishing"])
    }

    /// "update 12.07.100: 2 of 3 servers updated", and a rejected last reload when there is one.
    func statusLine() async -> String {
        var line = await balancer.updateRun().summary
        let reload = balancer.reloadStatus
        if !reload.lastReload.ok {
            let error = reload.lastReload.error?.split(separator: "\n").first.map(String.init) ?? "see the log"
            line += "; last reload rejected: \(error)"
        }
        return line
    }

    private func eventLoopsAnswer() async -> Bool {
        for loop in group.makeIterator() {
            do {
                try await loop.submit {}.get()
            } catch {
                return false
            }
        }
        return true
    }
}
