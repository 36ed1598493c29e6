import Foundation

/// One of the two sockets of a proxied connection.
public enum ConnectionSide: String, Sendable, Hashable, CustomStringConvertible {
    case client
    case node

    /// The socket at the other end of the relay.
    public var other: ConnectionSide { self == .client ? .node : .client }

    public var description: String { rawValue }
}

/// How a proxied connection ended: the `outcome` of its access-log line and of
/// `ums_balancer_connections_total`, the same words on every listener type and data path.
public enum ConnectionOutcome: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Both sides finished (a reset after a complete exchange included).
    case closed
    /// No node may take the connection (routing refused it).
    case refused
    /// Every node tried failed to connect or closed without answering.
    case unavailable
    /// The client went away before a node was connected.
    case clientAborted = "client-aborted"
    /// The client never completed what its listener classifies by (TLS ClientHello, TLS handshake).
    case handshakeFailed = "handshake-failed"
    /// A TLS-terminating listener read a request head it cannot accept (answered 400 or 431).
    case badRequest = "bad-request"
    /// No byte moved either way for the idle timeout.
    case idleTimeout = "idle-timeout"
    /// A socket failed (a reset in mid-exchange, a refused write) or the balancer could not set up.
    case error
    /// The balancer closed it at shutdown or when its listener was removed.
    case shutdown
    /// The balancer closed it to empty its node before a reconnect (the drain timeout passed).
    case drained

    public var description: String { rawValue }

    /// Refusals and failures the operator should see at the default log level.
    public var isWarning: Bool {
        switch self {
        case .refused, .unavailable, .handshakeFailed: true
        default: false
        }
    }
}

/// Why a socket call failed, by errno: kept as a number and described only when logged.
public struct SocketFailure: Sendable, Hashable, CustomStringConvertible {
    /// The errno value.
    public var code: Int32

    public init(code: Int32) {
        self.code = code
    }

    public static let connectionReset = SocketFailure(code: ECONNRESET)
    public static let connectionRefused = SocketFailure(code: ECONNREFUSED)
    public static let brokenPipe = SocketFailure(code: EPIPE)

    /// The process (or system) is out of descriptors or buffer memory: the balancer's own limit.
    public var isResourceExhaustion: Bool { [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(code) }

    /// No local port is free toward that address: every ephemeral port to it waits in TIME_WAIT
    /// (`net.ipv4.ip_local_port_range`), the balancer's shortage, not the node's.
    public var isLocalPortShortage: Bool { code == EADDRNOTAVAIL }

    /// The peer reset the connection (or it broke under a write): how a socket usually dies.
    public var isReset: Bool { code == ECONNRESET || code == EPIPE }

    public var description: String {
        switch code {
        case ECONNREFUSED: "connection refused"
        case EADDRNOTAVAIL: "no local port free toward the node (ip_local_port_range in TIME_WAIT)"
        default: String(cString: strerror(code))
        }
    }
}

/// Why one node could not take a connection.
public enum NodeFailureKind: Sendable, Hashable, CustomStringConvertible {
    /// The connect was refused (nothing listens on the service port).
    case refused
    /// The connect did not complete within `timeouts.connect`.
    case timedOut
    /// The node accepted, then closed (or reset) without sending a byte: handed on to the next node.
    case closedWithoutAnswer
    /// The node is named by a host name that did not resolve.
    case unresolved(String)
    /// Any other socket failure while connecting.
    case socket(SocketFailure)

    /// How connect(2) failing with `code` (an errno) reads.
    public init(connectError code: Int32) {
        switch code {
        case ECONNREFUSED: self = .refused
        case ETIMEDOUT: self = .timedOut
        default: self = .socket(SocketFailure(code: code))
        }
    }

    /// Whether it says something about the node's service, for passive health: a name that did not
    /// resolve or the balancer's own shortage of ports or descriptors does not.
    public var countsAgainstNode: Bool {
        switch self {
        case .unresolved: false
        case .socket(let failure): !failure.isLocalPortShortage && !failure.isResourceExhaustion
        case .refused, .timedOut, .closedWithoutAnswer: true
        }
    }

    public var description: String {
        switch self {
        case .refused: "connection refused"
        case .timedOut: "connect timed out"
        case .closedWithoutAnswer: "closed without answering"
        case .unresolved(let host): "cannot resolve \(host)"
        case .socket(let failure): failure.description
        }
    }
}

/// One node that let a connection down, and how.
public struct NodeFailure: Sendable, Hashable, CustomStringConvertible {
    public var node: NodeID
    public var kind: NodeFailureKind

    public init(node: NodeID, kind: NodeFailureKind) {
        self.node = node
        self.kind = kind
    }

    /// "ums2 connection refused".
    public var description: String { "\(node) \(kind)" }
}

/// Why a classifying listener gave up on a connection before routing it. `label` is the `reason`
/// of `ums_balancer_handshake_failures_total`: the same fault has the same label on every listener.
public enum HandshakeFailure: Sendable, Hashable, CustomStringConvertible {
    /// What the listener classifies by did not arrive in time.
    case timeout(what: String, limit: Duration)
    /// The client sent something other than TLS (plain HTTP on a TLS port, say).
    case notTLS(String)
    /// A ClientHello or request head larger than the listener accepts.
    case oversized(String)
    /// Broken TLS or HTTP framing.
    case malformed(String)
    /// The client's certificate was missing, unknown or invalid.
    case clientCertificate(String)
    /// The TLS handshake failed for another reason (no shared cipher or version, say).
    case tls(String)
    /// The listener's own certificate or key could not be loaded.
    case listenerCertificates
    /// A PROXY protocol header was missing or broken from a trusted source, or came from another.
    case proxyProtocol(String)

    /// The metrics label.
    public var label: String {
        switch self {
        case .timeout: "timeout"
        case .notTLS: "not-tls"
        case .oversized: "oversized"
        case .malformed: "malformed"
        case .clientCertificate: "client-certificate"
        case .tls: "tls-handshake"
        case .listenerCertificates: "listener-certificates"
        case .proxyProtocol: "proxy-protocol"
        }
    }

    public var description: String {
        switch self {
        case .timeout(let what, let limit): "no complete \(what) within \(DurationText.format(limit))"
        case .notTLS(let detail), .oversized(let detail), .malformed(let detail): detail
        case .clientCertificate(let detail): "TLS handshake failed: \(detail)"
        case .tls(let detail): "TLS handshake failed: \(detail)"
        case .listenerCertificates: "the listener's TLS certificates could not be loaded"
        case .proxyProtocol(let detail): detail
        }
    }
}

/// Why a connection ended, with the detail the access log prints as `reason`.
public enum ConnectionEndReason: Sendable, Hashable, CustomStringConvertible {
    /// Routing found no eligible node.
    case noEligibleNode(Refusal)
    /// Every node tried failed.
    case everyNodeFailed(TrafficClass, [NodeFailure])
    /// The client did not complete what the listener classifies by.
    case handshake(HandshakeFailure)
    /// The client closed before a node was connected.
    case clientClosedBeforeNode
    /// A socket failed.
    case socketFailed(ConnectionSide, SocketFailure)
    /// The client sent more than a redispatch may replay before a node was connected.
    case replayLimitExceeded(Int)
    /// The executor could not set the connection up (epoll refused a socket, say).
    case setupFailed(String)
    /// The balancer itself ran out of descriptors or memory opening the node socket.
    case balancerOutOfResources(SocketFailure)
    /// A configured limit refused it.
    case limit(ConnectionLimit)
    /// A `by-path` listener's HTTP limit closed it (`http` settings).
    case httpLimit(HTTPLimit)

    /// The `reason` label of `ums_balancer_refusals_total` for a refusal or give-up, else nil.
    public var refusalLabel: String? {
        switch self {
        case .noEligibleNode: "no-eligible-node"
        case .everyNodeFailed: "all-connects-failed"
        case .limit(let limit): limit.label
        default: nil
        }
    }

    public var description: String {
        switch self {
        case .noEligibleNode(let refusal): refusal.description
        case .everyNodeFailed(let trafficClass, let failures):
            "\(trafficClass) unavailable: every node failed: \(failures.map(\.description).joined(separator: ", "))"
        case .handshake(let failure): failure.description
        case .clientClosedBeforeNode: "client closed before a node was connected"
        case .socketFailed(let side, let failure): "\(side): \(failure)"
        case .replayLimitExceeded(let limit): "client sent more than \(limit) bytes before a node was connected"
        case .setupFailed(let detail): detail
        case .balancerOutOfResources(let failure): "the balancer is out of resources: \(failure)"
        case .limit(let limit): limit.description
        case .httpLimit(let limit): limit.description
        }
    }
}

/// A limit that refused a connection (`limits`, a listener's `max_connections` and
/// `max_connection_rate`, the nodes' `max_connections`). `label` is the refusal metric's `reason`.
public enum ConnectionLimit: Sendable, Hashable, CustomStringConvertible {
    /// The balancer holds `limits.max_connections` connections.
    case balancer(Int)
    /// The listener holds its `max_connections`.
    case listener(Int)
    /// The listener accepted its `max_connection_rate` new connections this second.
    case rate(Int)
    /// Every eligible node stayed at its `max_connections` for `limits.queue_timeout`.
    case queueTimeout(TrafficClass, Duration)

    public var label: String {
        switch self {
        case .balancer: "max-connections"
        case .listener: "listener-max-connections"
        case .rate: "connection-rate"
        case .queueTimeout: "queue-timeout"
        }
    }

    public var description: String {
        switch self {
        case .balancer(let limit): "the balancer holds its limit of \(limit) connections (limits.max_connections)"
        case .listener(let limit): "the listener holds its limit of \(limit) connections (max_connections)"
        case .rate(let rate): "more than \(rate) new connections per second (max_connection_rate)"
        case .queueTimeout(let trafficClass, let timeout):
            "\(trafficClass) refused: every eligible node stayed at its max_connections for \(DurationText.format(timeout)) (queue-timeout)"
        }
    }
}

/// The outcome of a connection and, where there is more to say, why.
public struct ConnectionEnd: Sendable, Hashable, CustomStringConvertible {
    public var outcome: ConnectionOutcome
    public var reason: ConnectionEndReason?

    public init(_ outcome: ConnectionOutcome, _ reason: ConnectionEndReason? = nil) {
        self.outcome = outcome
        self.reason = reason
    }

    public static let closed = ConnectionEnd(.closed)
    public static let shutdown = ConnectionEnd(.shutdown)
    public static let drained = ConnectionEnd(.drained)
    public static let idleTimeout = ConnectionEnd(.idleTimeout)

    public var description: String {
        reason.map { "\(outcome): \($0)" } ?? outcome.rawValue
    }
}
