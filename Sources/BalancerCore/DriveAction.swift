import Foundation

/// What the I/O layer must do because a driven update moved.
public enum DriveAction: Sendable, Hashable {
    /// The drive changed state (`nil`: it was just started); `reason` is for the journal and the log.
    case stateChanged(from: UpdateDrive.State?, to: UpdateDrive.State, reason: String)
    /// The node takes no new connections from now on; its install is called once the `connections`
    /// still open have closed, or `timeout` from now (after closing them with `update.drain_rate`).
    case drainingForInstall(NodeID, connections: Int, timeout: Duration)
    /// `update.drain_timeout` passed with `connections` still open to the node and
    /// `update.drain_rate` set: close them, `perSecond` at a time; the install is called when they
    /// are gone.
    case closeForInstall(NodeID, connections: Int, perSecond: Int)
    /// Persist the drive, then (only once it is recorded) call the node's install action for
    /// `version`, giving up on the call after `timeout`; the answer goes to `installAnswered`.
    case callInstall(NodeID, version: String, attempt: Int, timeout: Duration)
    /// The node is on the target version already: its step needs no install.
    case installSkipped(NodeID, mode: NodeMode)
    /// The node reported `installing`.
    case nodeInstalling(NodeID)
    /// The node is back on the target version in `mode`, `after` seconds from its install call;
    /// `canary` device connections must now pass through it (0: none).
    case nodeBack(NodeID, mode: NodeMode, after: TimeInterval, canary: Int)
    /// The step is done: `took` seconds, `served` device connections since the node came back.
    case stepDone(NodeID, took: TimeInterval, served: Int)
    /// A step stopped moving: said loudly (log, journal, `update.flags`), also while paused.
    case stepStalled(NodeID, reason: String)
    /// The next step waits: `reason` says for what (another node is unavailable). Said once.
    case stepWaiting(NodeID, reason: String)
    /// Every node is done: the reconnect of the update-mode nodes runs as the tracked run drives it.
    case reconnectStageStarted
    /// An operator resumed a drive whose reconnect stalled: retry the run's reconnect.
    case retryReconnect
}

/// Why a driven update cannot start (`POST /update/start` answers 400 for `invalidVersion`, 409 else).
public enum DriveStartRefusal: Error, Sendable, Hashable, CustomStringConvertible {
    /// A drive is under way already.
    case driveUnderWay(UpdateDrive)
    /// The version is not dot-separated integers.
    case invalidVersion(String)
    /// No server has a version below the one asked for, or one has a higher one.
    case nothingToUpdate(String)
    /// The plan has failing checks (start with `--force` to go ahead anyway).
    case planNotReady([UpdatePlan.Check])
    /// These nodes have no `install` action (neither their own nor a top-level one).
    case noInstallAction([NodeID])

    public var description: String {
        switch self {
        case .driveUnderWay(let drive):
            "a driven update to \(drive.targetVersion) is \(drive.state.rawValue): "
                + "pause, resume or abort it (ums-balancer update pause|resume|abort)"
        case .invalidVersion(let text):
            "version '\(text)' is not a version (dot-separated integers, e.g. 12.07.100)"
        case .nothingToUpdate(let why): why
        case .planNotReady(let failed):
            "the update plan is not ready: "
                + failed.map { "\($0.name): \($0.detail)" }.joined(separator: "; ")
                + " (ums-balancer update plan; --force starts anyway)"
        case .noInstallAction(let nodes):
            "no install action for \(nodes.joined(separator: ", ")): add `install: { url: ... }` or "
                + "`install: { command: [...] }` (top level or per node) to drive the update"
        }
    }
}

/// Why `update pause|resume|abort` does not apply now (`409`).
public enum DriveOperatorRefusal: Error, Sendable, Hashable, CustomStringConvertible {
    /// No drive is under way (`last` is the one that ended, if any).
    case noDrive(last: UpdateDrive.State?)
    /// The drive is not in a state the request applies to.
    case notApplicable(request: String, state: UpdateDrive.State)

    public var description: String {
        switch self {
        case .noDrive(nil):
            "no driven update: start one with ums-balancer update start --version V"
        case .noDrive(let last?):
            "no driven update under way (the last one is \(last.rawValue)): start one with update start --version V"
        case .notApplicable("pause", let state):
            "the driven update is \(state.rawValue), not running: there is nothing to pause"
                + (state == .stalled ? " (resume retries the stalled step, abort stops the drive)" : "")
        case .notApplicable("resume", let state):
            "the driven update is \(state.rawValue): resume applies to a paused or stalled drive"
        case .notApplicable(let request, let state):
            "the driven update is \(state.rawValue): \(request) does not apply"
        }
    }
}
