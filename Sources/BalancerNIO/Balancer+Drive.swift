import BalancerCore
import Foundation

/// A driven update (`ums-balancer update start|pause|resume|abort`): the admin API calls these.
extension Balancer {
    /// The driven update under way, or the last one; nil when none was started.
    public func updateDrive() async -> UpdateDrive? {
        await coordinator.currentDrive
    }

    /// Starts driving the update to `version` in the order `update plan` reports; refused (with why)
    /// while a drive is under way, when a node has no install action, and, unless `force`, when the
    /// plan is not ready. Journaled with `actor`.
    public func startUpdate(version: String, force: Bool, actor: String) async throws(DriveStartRefusal)
        -> UpdateDrive
    {
        // Cheap refusals first: the plan asks every node for its clock.
        if let drive = await coordinator.currentDrive, drive.state.isActive { throw .driveUnderWay(drive) }
        guard Version(version) != nil else { throw .invalidVersion(version) }
        let plan = await updatePlan()
        return try await coordinator.startDrive(version: version, plan: plan, force: force, actor: actor)
    }

    /// No new step starts until `resumeUpdate`.
    public func pauseUpdate(actor: String) async throws(DriveOperatorRefusal) -> UpdateDrive {
        try await coordinator.pauseDrive(actor: actor)
    }

    /// Goes on after a pause, or retries what stalled.
    public func resumeUpdate(actor: String) async throws(DriveOperatorRefusal) -> UpdateDrive {
        try await coordinator.resumeDrive(actor: actor)
    }

    /// Stops the drive; the nodes stay as they are and the run goes on being tracked.
    public func abortUpdate(actor: String) async throws(DriveOperatorRefusal) -> UpdateDrive {
        try await coordinator.abortDrive(actor: actor)
    }
}
