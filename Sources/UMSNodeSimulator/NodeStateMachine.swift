/// The pure mode transitions of a simulated node; the I/O around it lives in `SimulatedNode`.
public struct NodeStateMachine: Sendable, Hashable {
    /// Why a transition was refused.
    public struct Refusal: Error, Sendable, Hashable {
        /// A sentence saying why, suitable for a JSON error.
        public var reason: String
    }

    /// How an install ends, decided from the versions of the other cluster nodes.
    public enum InstallOutcome: Sendable, Hashable {
        /// Every other node is on the new version: renew the productive schema and serve on it.
        case renewProductiveSchema
        /// Some node is still on an older version: serve on a local copy in update mode.
        case useLocalCopy
    }

    /// What a reconnect request leads to.
    public enum ReconnectDecision: Sendable, Hashable {
        /// The node now reconnects (answer 202).
        case started
        /// Nothing to do: already reconnecting or on the productive database (answer 200).
        case alreadyDone
    }

    /// The current mode.
    public private(set) var mode: NodeMode
    /// The version reported (old until an install finishes).
    public private(set) var version: NodeVersion
    /// The database worked on.
    public private(set) var database: DatabaseKind
    /// The version being installed, while installing.
    public private(set) var installingVersion: NodeVersion?
    /// Console logins accepted in update mode.
    public private(set) var consoleLoginsInUpdateMode = 0
    /// A reconnect was accepted and the node is still serving in update mode, about to go down.
    public private(set) var reconnectPending = false
    // Where an install started from, so a failed install can go back.
    private var beforeInstall: Origin?

    private struct Origin: Sendable, Hashable {
        var mode: NodeMode
        var database: DatabaseKind
    }

    /// A node serving normally on the productive database.
    public init(version: NodeVersion) {
        self.mode = .normal
        self.version = version
        self.database = .productive
    }

    /// A node resuming update mode on its local copy after a restart.
    public init(resumingUpdateAt version: NodeVersion) {
        self.mode = .update
        self.version = version
        self.database = .localCopy
    }

    /// Starts installing `target`; refused while installing or reconnecting.
    public mutating func beginInstall(_ target: NodeVersion) throws(Refusal) {
        switch mode {
        case .installing:
            throw Refusal(reason: "an install of \(installingVersion?.text ?? "?") is already running")
        case .reconnecting:
            throw Refusal(reason: "the node is reconnecting to the productive database")
        case .normal, .update:
            beforeInstall = Origin(mode: mode, database: database)
            mode = .installing
            installingVersion = target
        }
    }

    /// Decides how the install of `target` ends, given the versions of all other registered nodes.
    public static func installOutcome(target: NodeVersion, otherNodeVersions: [NodeVersion]) -> InstallOutcome {
        otherNodeVersions.allSatisfy { $0 == target } ? .renewProductiveSchema : .useLocalCopy
    }

    /// Finishes the running install: the node reports the new version in normal or update mode.
    public mutating func finishInstall(_ outcome: InstallOutcome) {
        guard mode == .installing, let target = installingVersion else { return }
        version = target
        installingVersion = nil
        beforeInstall = nil
        switch outcome {
        case .renewProductiveSchema:
            mode = .normal
            database = .productive
        case .useLocalCopy:
            mode = .update
            database = .localCopy
        }
    }

    /// Abandons the running install: the node comes back as it was, on its old version.
    public mutating func failInstall() {
        guard mode == .installing else { return }
        mode = beforeInstall?.mode ?? .normal
        database = beforeInstall?.database ?? .productive
        installingVersion = nil
        beforeInstall = nil
    }

    /// Asks to reconnect to the productive database, whose schema is `productiveSchema`. With
    /// `pending`, the node accepts but keeps serving in update mode until `beginPendingReconnect()`.
    public mutating func requestReconnect(
        productiveSchema: NodeVersion, pending: Bool = false
    ) throws(Refusal) -> ReconnectDecision {
        switch mode {
        case .reconnecting, .normal:
            return .alreadyDone
        case .update where reconnectPending:
            return .alreadyDone
        case .installing:
            throw Refusal(reason: "the node is installing; reconnect once it is in update mode")
        case .update:
            guard productiveSchema == version else {
                throw Refusal(
                    reason: "the productive schema is on \(productiveSchema.text), not on the node's version "
                        + "\(version.text): update the remaining nodes first")
            }
            if pending {
                reconnectPending = true
            } else {
                mode = .reconnecting
            }
            return .started
        }
    }

    /// The accepted reconnect begins: the node goes down to reconnect.
    public mutating func beginPendingReconnect() {
        guard reconnectPending, mode == .update else { return }
        reconnectPending = false
        mode = .reconnecting
    }

    /// Finishes reconnecting: the node serves normally on the productive database.
    public mutating func finishReconnect() {
        guard mode == .reconnecting else { return }
        mode = .normal
        database = .productive
    }

    /// Records an accepted console login; returns true when it happened in update mode.
    public mutating func recordConsoleLogin() -> Bool {
        guard mode == .update else { return false }
        consoleLoginsInUpdateMode += 1
        return true
    }
}
