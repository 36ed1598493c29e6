import Foundation
import GRDB

extension SimulatedNode {
    /// Starts installing `target`; the device and console ports are closed when this returns.
    func install(_ target: NodeVersion, seconds: Double) async -> Result<NodeStatus, NodeStateMachine.Refusal> {
        let begun = runtime.withLock { runtime -> Result<Void, NodeStateMachine.Refusal> in
            guard runtime.started, !runtime.stopped else {
                return .failure(.init(reason: "the node is not running"))
            }
            return Result { () throws(NodeStateMachine.Refusal) in try runtime.machine.beginInstall(target) }
        }
        if case .failure(let refusal) = begun { return .failure(refusal) }
        logger.info("install started", metadata: ["target": "\(target)", "seconds": "\(seconds)"])
        await closeServicePortsAfterPreviousTransition()
        let task = Task { await self.runInstall(target, seconds: seconds) }
        runtime.withLock { $0.transition = task }
        return .success(status)
    }

    /// Asks to go back to the productive database; the ports are closed when this returns `.started`.
    func reconnect() async -> Result<NodeStateMachine.ReconnectDecision, NodeStateMachine.Refusal> {
        guard let productive = runtime.withLock({ $0.stopped ? nil : $0.productive }) else {
            return .failure(.init(reason: "the node is not running"))
        }
        let schema: NodeVersion
        do {
            schema = try await productive.schemaVersion()
        } catch {
            return .failure(.init(reason: "the productive schema version cannot be read: \(error)"))
        }
        let delay = configuration.reconnectDelaySeconds
        let decision = runtime.withLock { runtime in
            Result { () throws(NodeStateMachine.Refusal) in
                try runtime.machine.requestReconnect(productiveSchema: schema, pending: delay > 0)
            }
        }
        guard case .success(.started) = decision else { return decision }
        guard delay > 0 else {
            logger.info("reconnect started")
            await closeServicePortsAfterPreviousTransition()
            let task = Task { await self.runReconnect() }
            runtime.withLock { $0.transition = task }
            return decision
        }
        logger.info("reconnect accepted: going down", metadata: ["in": "\(delay)s"])
        let task = Task {
            do { try await Task.sleep(for: .milliseconds(Int(delay * 1000))) } catch { return }
            self.runtime.withLock { $0.machine.beginPendingReconnect() }
            self.logger.info("reconnect started")
            // (This task is the transition: it waits for no other.)
            await self.closeServicePorts()
            await self.runReconnect()
        }
        runtime.withLock { $0.transition = task }
        return decision
    }

    private func runInstall(_ target: NodeVersion, seconds: Double) async {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        guard let productive = runtime.withLock({ $0.productive }) else { return }
        await registerCurrentRow(productive)
        await drainServicePorts()
        do { try await Task.sleep(until: deadline) } catch { return }
        let directory = configuration.dataDirectory
        let pendingPath = localCopyPath + ".new"
        do {
            // Snapshot first, so that a failure leaves the old state (and any old local copy) intact.
            try LocalCopy.remove(at: pendingPath)
            try await productive.copy(toNewFile: pendingPath)
            let outcome = try await productive.completeInstall(id: configuration.id, target: target)
            let oldLocal = runtime.withLock { runtime in
                defer { runtime.local = nil }
                return runtime.local
            }
            try? oldLocal?.close()
            try LocalCopy.remove(at: localCopyPath)
            var newLocal: DatabaseQueue?
            switch outcome {
            case .renewProductiveSchema:
                try LocalCopy.remove(at: pendingPath)
            case .useLocalCopy:
                try FileManager.default.moveItem(atPath: pendingPath, toPath: localCopyPath)
                newLocal = try LocalCopy.open(at: LocalCopy.path(id: configuration.id, in: directory))
            }
            runtime.withLock { runtime in
                runtime.shownWhileStarting = Self.status(id: configuration.id, runtime.machine)
                runtime.machine.finishInstall(outcome)
                runtime.local = newLocal
            }
            logger.info(
                "install finished",
                metadata: ["mode": "\(runtime.withLock { $0.machine.mode }.rawValue)", "version": "\(target)"])
        } catch {
            logger.error("install failed", metadata: ["error": "\(error)"])
            try? LocalCopy.remove(at: pendingPath)
            runtime.withLock { runtime in
                runtime.shownWhileStarting = Self.status(id: configuration.id, runtime.machine)
                runtime.machine.failInstall()
            }
            await registerCurrentRow(productive)
        }
        await reopenServicePortsThenShowMode()
    }

    private func runReconnect() async {
        let deadline = ContinuousClock.now + .milliseconds(Int(configuration.reconnectSeconds * 1000))
        guard let productive = runtime.withLock({ $0.productive }) else { return }
        await registerCurrentRow(productive)
        await drainServicePorts()
        do { try await Task.sleep(until: deadline) } catch { return }
        let local = runtime.withLock { runtime in
            defer { runtime.local = nil }
            return runtime.local
        }
        try? local?.close()
        do {
            try LocalCopy.remove(at: localCopyPath)
        } catch {
            logger.warning("local copy could not be deleted", metadata: ["error": "\(error)"])
        }
        runtime.withLock { runtime in
            runtime.shownWhileStarting = Self.status(id: configuration.id, runtime.machine)
            runtime.machine.finishReconnect()
        }
        await registerCurrentRow(productive)
        logger.info("reconnected to the productive database")
        await reopenServicePortsThenShowMode()
    }

    private func reopenServicePortsThenShowMode() async {
        await reopenServicePorts()
        runtime.withLock { $0.shownWhileStarting = nil }
    }

    private func registerCurrentRow(_ productive: ProductiveDatabase) async {
        do {
            try await productive.register(currentRow())
        } catch {
            logger.error("cluster registry could not be updated", metadata: ["error": "\(error)"])
        }
    }

    // The previous transition may still be re-opening the ports; let it finish so they end up closed.
    private func closeServicePortsAfterPreviousTransition() async {
        await runtime.withLock({ $0.transition })?.value
        await closeServicePorts()
    }

    private func closeServicePorts() async {
        async let device: Void = deviceServer.close()
        async let console: Void = consoleServer.close()
        _ = await (device, console)
    }

    private func drainServicePorts() async {
        let timeout = Duration.milliseconds(Int(configuration.drainTimeoutSeconds * 1000))
        async let device: Void = deviceServer.waitUntilDrained(timeout: timeout)
        async let console: Void = consoleServer.waitUntilDrained(timeout: timeout)
        _ = await (device, console)
    }

    // The ports can be briefly unavailable to re-bind; retry a few times before giving up.
    private func reopenServicePorts() async {
        for attempt in 1...10 {
            let serving = runtime.withLock { !$0.stopped && [.normal, .update].contains($0.machine.mode) }
            guard serving else { return }
            do {
                if !deviceServer.isOpen { try await deviceServer.open() }
                if !consoleServer.isOpen { try await consoleServer.open() }
                return
            } catch is HTTPServer.RetiredError {
                return
            } catch {
                logger.warning("re-opening ports failed", metadata: ["attempt": "\(attempt)", "error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
        logger.error("device and console ports stay closed")
    }
}
