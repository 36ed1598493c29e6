import Foundation

/// `update pause|resume|abort`: what an operator can do to a driven update.
extension UpdateDriveMachine {
    /// No new step starts; the one under way goes on (and its deadline still applies, loudly). A
    /// step still draining has not called its installer: its drain is lifted, and starts again on
    /// resume.
    public mutating func pauseRequested(by actor: String, now: Date) throws(DriveOperatorRefusal) -> [DriveAction] {
        guard var drive, drive.state.isActive else { throw .noDrive(last: drive?.state) }
        guard drive.state == .running else { throw .notApplicable(request: "pause", state: drive.state) }
        var reason = "paused by \(actor)"
        if let index = drive.currentIndex, drive.steps[index].phase == .draining {
            drive.steps[index].phase = .pending
            drive.steps[index].deadline = nil
            closingDrain = nil
            reason += "; \(drive.steps[index].node) takes connections again until resumed (not installed yet)"
        }
        drive.state = .paused
        drive.reason = reason
        self.drive = drive
        return [.stateChanged(from: .running, to: .paused, reason: reason)]
    }

    /// Goes on from a pause, or retries what stalled: a step whose node shows no sign of installing
    /// is called again (a new attempt, recorded first), one still installing or on its canary gets
    /// a fresh deadline, a stalled reconnect is retried.
    public mutating func resumeRequested(
        by actor: String, observation: DriveObservation, now: Date
    ) throws(DriveOperatorRefusal) -> [DriveAction] {
        guard var drive, drive.state.isActive else { throw .noDrive(last: drive?.state) }
        guard drive.state != .running else { throw .notApplicable(request: "resume", state: drive.state) }
        let from = drive.state
        drive.state = .running
        drive.reason = "resumed by \(actor)"
        var actions: [DriveAction] = [.stateChanged(from: from, to: .running, reason: "resumed by \(actor)")]
        if let index = drive.currentIndex, drive.steps[index].stalled != nil {
            actions += retry(&drive, at: index, observation, now: now)
        } else if drive.currentIndex == nil, observation.run == .stalled {
            actions.append(.retryReconnect)
        }
        self.drive = drive
        waitSaid = nil
        return actions + observed(observation, now: now)
    }

    /// Stops the drive: no further step starts, the nodes stay as they are (an installer already
    /// running goes on), and the tracked run goes on being tracked as without a drive.
    public mutating func abortRequested(by actor: String, now: Date) throws(DriveOperatorRefusal) -> [DriveAction] {
        guard var drive, drive.state.isActive else { throw .noDrive(last: drive?.state) }
        let from = drive.state
        var reason = "aborted by \(actor)"
        if let index = drive.currentIndex, drive.steps[index].phase != .pending {
            reason += "; \(drive.steps[index].node) left \(drive.steps[index].phase.rawValue)"
        }
        drive.state = .aborted
        drive.reason = reason
        drive.finishedAt = now
        for index in drive.steps.indices { drive.steps[index].deadline = nil }
        self.drive = drive
        closingDrain = nil
        return [.stateChanged(from: from, to: .aborted, reason: reason)]
    }

    /// The operator's retry of a stalled step.
    private func retry(
        _ drive: inout UpdateDrive, at index: Int, _ observation: DriveObservation, now: Date
    ) -> [DriveAction] {
        let step = drive.steps[index]
        let status = observation.nodes.first { $0.id == step.node }
        drive.steps[index].stalled = nil
        switch step.phase {
        case .calling, .installing:
            let onTarget = status?.version.flatMap(Version.init) == Version(drive.targetVersion)
            if status?.mode == .installing || (status?.health == .up && onTarget) {
                // Installing, or back: wait again rather than start a second installer.
                drive.steps[index].phase = .installing
                drive.steps[index].sawInstalling = drive.steps[index].sawInstalling || status?.mode == .installing
                drive.steps[index].deadline = now.addingTimeInterval(settings.installTimeout.seconds)
                return []
            }
            // Called again as a next step is: only while no other server is out (one at a time),
            // else it waits, and says for what, until that server is back.
            drive.steps[index].phase = .pending
            drive.steps[index].deadline = nil
            return []
        case .canary:
            drive.steps[index].deadline = now.addingTimeInterval(settings.canaryTimeout.seconds)
            return []
        case .pending, .draining, .done:
            return []
        }
    }
}
