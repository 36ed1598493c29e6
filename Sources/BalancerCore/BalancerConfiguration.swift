/// A host and port, as written in the configuration (`10.0.0.11:30001`, `[::1]:8443`).
public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// One listening socket and how its connections are classified and balanced.
public struct ListenerConfiguration: Sendable, Hashable {
    public var name: String
    public var bind: Endpoint
    public var backendPort: Int
    public var classification: ListenerClassification
    public var balance: BalanceAlgorithm
    /// How long a classifying listener waits for the bytes it classifies by.
    public var handshakeTimeout: Duration = .seconds(5)
    /// The most connections this listener holds at once (`nil`: no limit of its own).
    public var maxConnections: Int?
    /// The most new connections per second it accepts (`nil`: no limit).
    public var maxConnectionRate: Int?
    /// `proxy_protocol.from`: sources whose connections begin with a PROXY header (v1 or v2);
    /// a header from any other source is refused. `nil`: the listener takes no PROXY headers.
    public var proxyProtocolFrom: [AddressRange]?
    /// `send_proxy`: begin each node connection with a PROXY header of this version (1 or 2).
    public var sendProxy: Int?

    public init(
        name: String,
        bind: Endpoint,
        backendPort: Int,
        classification: ListenerClassification,
        balance: BalanceAlgorithm = .leastConnections
    ) {
        self.name = name
        self.bind = bind
        self.backendPort = backendPort
        self.classification = classification
        self.balance = balance
    }

    /// Consoles keep per-server sessions, so console traffic always sticks to a node by client
    /// address; device traffic uses the listener's `balance`.
    public func algorithm(for trafficClass: TrafficClass) -> BalanceAlgorithm {
        trafficClass == .console ? .source : balance
    }
}

/// One UMS Server behind the balancer.
public struct NodeConfiguration: Sendable, Hashable {
    public var id: NodeID
    public var host: String
    /// The most connections the balancer relays to this node at once (`nil`: no limit); beyond it
    /// a connection waits up to `limits.queue_timeout` for a slot on an eligible node.
    public var maxConnections: Int?
    /// This node's own `install` action, in place of the top-level one.
    public var install: InstallSettings?

    public init(id: NodeID, host: String) {
        self.id = id
        self.host = host
    }
}

/// Active health checking of the nodes.
public struct HealthSettings: Sendable, Hashable {
    public var interval: Duration = .seconds(2)
    public var timeout: Duration = .seconds(1)
    public var rise = 2
    public var fall = 3
    /// The port the TCP connect probe tries; `nil` means the first listener's backend port.
    public var port: Int?
    /// What real connections show: failed ones take a node out of rotation for a while.
    public var passive = PassiveHealthSettings()

    public init() {}
}

/// The `limits` section: what the whole balancer holds.
public struct LimitSettings: Sendable, Hashable {
    /// The most client connections at once across listeners (`nil`: only the open-file limit).
    public var maxConnections: Int?
    /// How long a connection waits for a slot when every eligible node is at its `max_connections`.
    public var queueTimeout: Duration = .seconds(5)

    public init() {}
}

/// Per-connection time limits.
public struct TimeoutSettings: Sendable, Hashable {
    /// How long one connect attempt to a node may take before the next node is tried.
    public var connect: Duration = .seconds(3)
    /// A connection with no bytes moving either way for this long is closed.
    public var idle: Duration = .seconds(3600)

    public init() {}
}

/// What the console may reach while an update runs (`update.console`).
public enum ConsolePolicy: String, Sendable, Hashable, CaseIterable {
    /// Never to a node in update mode.
    case normalOnly = "normal-only"
    /// No console logins anywhere while an update runs.
    case freeze
    /// No restriction.
    case allow
}

/// The `update` section.
public struct UpdateSettings: Sendable, Hashable {
    public var console: ConsolePolicy = .normalOnly
    public var drainTimeout: Duration = .seconds(30)
    /// After a reconnect, a node's share of new connections grows to full over this long.
    public var slowStart: Duration = .seconds(30)
    /// A node reporting `installing` longer than this is flagged (a hung or failed installer).
    public var installTimeout: Duration = .seconds(30 * 60)
    /// An update run older than this is flagged (UMS asks to finish an update quickly).
    public var maxDuration: Duration = .seconds(4 * 3600)
    /// Connections closed per second on a node still holding some at `drainTimeout` (nil: the
    /// node's reconnect cuts them all at once), so long-lived devices move over without a storm.
    public var drainRate: Int?
    /// The canary gate of a driven update: device connections a node back from its install must
    /// serve through the balancer (completed normally) before the next node is installed; 0: none.
    public var canaryConnections = 20
    /// How long a node may take to pass its canary gate before the driven update stalls.
    public var canaryTimeout: Duration = .seconds(10 * 60)

    public init() {}
}

/// How a probe or action reaches a node: an HTTP URL template or an operator command.
public enum NodeAction: Sendable, Hashable {
    /// A URL with `{host}` and `{id}` placeholders.
    case url(String)
    /// A program and its arguments, with the same placeholders.
    case command([String])
}

/// The `status` section: how each node's mode is read.
public struct StatusProbeSettings: Sendable, Hashable {
    public var action: NodeAction
    public var timeout: Duration?

    public init(action: NodeAction, timeout: Duration? = nil) {
        self.action = action
        self.timeout = timeout
    }
}

/// The `reconnect` section: how a node is told to leave update mode.
public struct ReconnectSettings: Sendable, Hashable {
    public var action: NodeAction
    public var timeout: Duration = .seconds(120)
    public var retries = 5
    /// How many update-mode nodes may be drained and reconnecting at once; the next starts when
    /// one reports normal again. Nodes that report `reconnecting` or are down count too.
    public var maxUnavailable = 1

    public init(action: NodeAction) {
        self.action = action
    }
}

/// The `install` action of a driven update (`ums-balancer update start`): starts the installer of
/// one node; the node's status then tells how it goes.
public struct InstallSettings: Sendable, Hashable {
    /// A URL (POSTed) or a command, with `{id}`, `{host}` and `{version}` placeholders.
    public var action: NodeAction
    /// How long one call may take; the action starts the installer, it does not wait for it.
    public var timeout: Duration = .seconds(60)

    public init(action: NodeAction) {
        self.action = action
    }
}

/// The `state` section: where the update run and journal are kept.
public struct StateSettings: Sendable, Hashable {
    public var path: String

    public init(path: String) {
        self.path = path
    }
}

/// The `admin` section: the admin HTTP API.
public struct AdminSettings: Sendable, Hashable {
    public var bind: Endpoint
    public var tokenFile: String?

    public init(bind: Endpoint, tokenFile: String? = nil) {
        self.bind = bind
        self.tokenFile = tokenFile
    }
}

/// A whole, validated configuration: an immutable snapshot that is swapped, never edited in place.
public struct BalancerConfiguration: Sendable, Hashable {
    public var listeners: [ListenerConfiguration]
    public var nodes: [NodeConfiguration]
    public var health = HealthSettings()
    public var timeouts = TimeoutSettings()
    public var limits = LimitSettings()
    /// Event-loop threads; `nil` means one per core.
    public var threads: Int?
    public var shutdownGrace: Duration = .seconds(30)
    public var status: StatusProbeSettings?
    public var reconnect: ReconnectSettings?
    /// The `install` action for nodes that have none of their own.
    public var install: InstallSettings?
    public var update = UpdateSettings()
    public var state: StateSettings?
    public var admin: AdminSettings?

    public init(listeners: [ListenerConfiguration], nodes: [NodeConfiguration]) {
        self.listeners = listeners
        self.nodes = nodes
    }

    /// The install action of `node`: its own, else the top-level one.
    public func install(for node: NodeID) -> InstallSettings? {
        nodes.first { $0.id == node }?.install ?? install
    }

    /// The port TCP health probes connect to.
    public var healthPort: Int? {
        health.port ?? listeners.first?.backendPort
    }
}
