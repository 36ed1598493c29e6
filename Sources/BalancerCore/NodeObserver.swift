/// The result of one probe of one node.
public enum ProbeOutcome: Sendable, Hashable {
    /// The node answered; `report` is nil for a plain TCP connect probe.
    case answered(NodeReport?)
    /// No usable answer: refused, timed out, not HTTP 200, not JSON, or the command failed.
    case failed(String)
}

/// Folds one node's probe outcomes into its health, mode and version.
///
/// A successful status answer sets the mode at once (a node entering update mode must stop
/// getting console logins now, not `rise` probes later). Failed probes leave the last reported
/// mode in place until `fall` of them make the node `down`; then the mode is `unknown`.
public struct NodeObserver: Sendable, Hashable {
    public private(set) var tracker: HealthTracker
    /// The probe reports a mode; a plain TCP probe does not, and its nodes stay `normal`.
    public let readsMode: Bool

    public init(rise: Int, fall: Int, readsMode: Bool) {
        tracker = HealthTracker(rise: rise, fall: fall)
        self.readsMode = readsMode
    }

    /// Applies `outcome` to what the probes make of the node.
    public mutating func record(_ outcome: ProbeOutcome, into status: inout NodeObservation) {
        var failed = false
        switch outcome {
        case .answered(let report):
            if let health = tracker.record(success: true) { status.health = health }
            if let report {
                status.mode = report.mode
                if let version = report.version { status.version = version }
            }
        case .failed:
            failed = true
            if let health = tracker.record(success: false) { status.health = health }
        }
        if readsMode, status.health == .down, failed || tracker.isFlapping {
            status.mode = .unknown
        }
    }
}
