import BalancerCore
import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// Where one connect attempt goes.
public struct NodeTarget: RelayTarget, Hashable {
    public var node: NodeID
    public var host: String
    public var port: Int
    /// The socket address: parsed once per configuration for an IP address, resolved off the
    /// event loops for a host name (nil until it resolved).
    public var address: SocketAddress?
    /// The node has failed connections on record: report when it answers, to forgive them.
    public var reportsAnswer = false

    public init(node: NodeID, host: String, port: Int, address: SocketAddress?) {
        self.node = node
        self.host = host
        self.port = port
        self.address = address
    }
}

/// A node's host, and its socket address (port 0): parsed for an IP address, resolved for a name.
public struct NodeHost: Sendable {
    /// `host` is a name to resolve, not an IP address.
    public static func isName(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) == nil
    }

    var name: String
    var address: SocketAddress? {
        didSet { addressWithPort = nil }
    }
    var isName: Bool
    /// `address` with the port last asked for (nil while `address` is): a listener asks with the
    /// same port for every connection, and setting a port copies the address.
    private var addressWithPort: SocketAddress?

    init(_ name: String) {
        self.name = name
        self.address = try? SocketAddress(ipAddress: name, port: 0)
        self.isName = address == nil
    }

    /// The hosts of `nodes`; a name that stays the same keeps the address it resolved to.
    static func table(_ nodes: [NodeConfiguration], keeping old: [NodeID: NodeHost] = [:]) -> [NodeID: NodeHost] {
        Dictionary(
            uniqueKeysWithValues: nodes.map { node in
                if let kept = old[node.id], kept.name == node.host { return (node.id, kept) }
                return (node.id, NodeHost(node.host))
            })
    }

    mutating func target(node: NodeID, port: Int) -> NodeTarget {
        if let address, addressWithPort?.port != port {
            var withPort = address
            withPort.port = port
            addressWithPort = withPort
        }
        return NodeTarget(node: node, host: name, port: port, address: addressWithPort)
    }
}

/// Where a new connection goes.
public enum Route: Sendable, Hashable {
    /// Try these, in order.
    case targets([NodeTarget])
    /// Nobody can take it.
    case refused(Refusal)
    /// Every eligible node is at its `max_connections`: wait for a slot.
    case queue
}

/// The shared, lock-protected routing state: every event loop asks it per new connection and
/// the probes write into it. Critical sections are short and never `await`.
public final class NodeDirectory: Sendable {
    private struct State {
        var table: RoutingTable
        var hosts: [NodeID: NodeHost]
    }

    private let state: NIOLockedValueBox<State>
    private let drainedNodes: AsyncStream<NodeID>.Continuation
    /// Nodes whose last connection closed while they were drained (by the operator, for their
    /// reconnect or their install): told when it happens, so nobody polls for it.
    public let drained: AsyncStream<NodeID>

    /// A directory of `nodes`, all as the probes would see them in `initial`.
    public init(nodes: [NodeConfiguration], consolePolicy: ConsolePolicy, initial: (NodeID) -> NodeObservation) {
        let table = RoutingTable(
            records: nodes.map { NodeRecord(id: $0.id, observation: initial($0.id)) }, consolePolicy: consolePolicy)
        let hosts = NodeHost.table(nodes)
        state = NIOLockedValueBox(State(table: table, hosts: hosts))
        (drained, drainedNodes) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(64))
    }

    /// The nodes named by host name, with their names: what the resolver looks up.
    public var hostNames: [(node: NodeID, name: String)] {
        state.withLockedValue { state in
            state.table.nodes.compactMap { node in
                state.hosts[node.id].flatMap { $0.isName ? (node.id, $0.name) : nil }
            }
        }
    }

    /// Records what `name` (the host of `node`) resolved to; nil when it did not resolve. A name
    /// changed by a reload meanwhile is left alone. Returns whether the address changed.
    @discardableResult
    public func resolved(_ node: NodeID, name: String, to address: SocketAddress?) -> Bool {
        state.withLockedValue { state in
            guard var host = state.hosts[node], host.isName, host.name == name else { return false }
            guard host.address != address else { return false }
            host.address = address
            state.hosts[node] = host
            return true
        }
    }

    /// Routing decision plus the address of every node to try, in order.
    public func route(
        _ trafficClass: TrafficClass,
        algorithm: BalanceAlgorithm,
        clientKey: String,
        port: Int
    ) -> Route {
        let (route, events) = state.withLockedValue { state -> (Route, [PassiveHealthEvent]) in
            let route: Route
            switch state.table.route(trafficClass, algorithm: algorithm, clientKey: clientKey) {
            case .refuse(let refusal):
                route = .refused(refusal)
            case .queue:
                route = .queue
            case .tryNodes(let ids):
                route = .targets(
                    ids.compactMap { id in
                        var target = state.hosts[id]?.target(node: id, port: port)
                        if state.table.hasFailureRecord(id) { target?.reportsAnswer = true }
                        return target
                    })
            }
            return (route, state.table.pendingEvents.isEmpty ? [] : state.table.takePendingEvents())
        }
        report(events)
        return route
    }

    // MARK: - Passive health

    /// Where ejections and returns are reported (journal, log, metrics); set once at start.
    public func onPassiveHealth(_ sink: @escaping @Sendable (PassiveHealthEvent) -> Void) {
        passiveHealthSink.withLockedValue { $0 = sink }
    }

    private let passiveHealthSink = NIOLockedValueBox<(@Sendable (PassiveHealthEvent) -> Void)?>(nil)

    private func report(_ events: [PassiveHealthEvent]) {
        guard !events.isEmpty, let sink = passiveHealthSink.withLockedValue({ $0 }) else { return }
        for event in events { sink(event) }
    }

    /// A connection to `node` failed (`failure` says how): counted for passive health.
    public func nodeFailed(_ node: NodeID, _ failure: NodeFailureKind) {
        guard failure.countsAgainstNode else { return }
        let events = state.withLockedValue { state -> [PassiveHealthEvent] in
            let ejected = state.table.nodeFailed(node, reason: failure.description)
            return state.table.takePendingEvents() + (ejected.map { [$0] } ?? [])
        }
        report(events)
    }

    /// `node` answered a connection: its failures are forgiven.
    public func nodeAnswered(_ node: NodeID) {
        state.withLockedValue { $0.table.nodeAnswered(node) }
    }

    /// `node` is out of rotation by passive health now.
    public func isEjected(_ node: NodeID) -> Bool {
        state.withLockedValue { $0.table.isEjected(node) }
    }

    /// Applies passive-health settings, the slow start of returning nodes and the nodes' limits.
    public func configure(passive: PassiveHealthSettings, slowStart: Duration, nodes: [NodeConfiguration]) {
        state.withLockedValue { state in
            state.table.passive = passive
            state.table.returnSlowStart = slowStart
            state.table.connectionLimits = Dictionary(
                uniqueKeysWithValues: nodes.compactMap { node in node.maxConnections.map { (node.id, $0) } })
        }
    }

    /// Counts a connection or connect attempt against `node` (for least-connections).
    public func connectionOpened(to node: NodeID) {
        state.withLockedValue { $0.table.connectionOpened(to: node) }
    }

    /// Releases a count taken by `connectionOpened(to:)`.
    public func connectionClosed(from node: NodeID) {
        let drainedNow = state.withLockedValue { state in
            state.table.connectionClosed(from: node) && state.table.status(of: node).map(Self.isDrained) == true
        }
        if drainedNow { drainedNodes.yield(node) }
    }

    private static func isDrained(_ status: NodeStatus) -> Bool {
        status.reconnectDrain || status.installDrain || status.admin != .active
    }

    /// Applies one change to `node`'s state (probes, operator and update run alike); returns the
    /// state before it when the state changed.
    @discardableResult
    public func apply(_ event: NodeEvent, to node: NodeID) -> NodeStatus? {
        let (before, drainedNow) = state.withLockedValue { state -> (NodeStatus?, Bool) in
            let before = state.table.apply(event, to: node)
            // Drained with nothing open: said at once, not at the next close that never comes.
            let drainedNow =
                before.map { !Self.isDrained($0) } == true && state.table.status(of: node).map(Self.isDrained) == true
                && state.table.connections(to: node) == 0
            return (before, drainedNow)
        }
        if drainedNow { drainedNodes.yield(node) }
        return before
    }

    /// Folds what a probe found into `node`'s observation; returns the state before when it changed.
    @discardableResult
    public func observe(_ node: NodeID, _ change: (inout NodeObservation) -> Void) -> NodeStatus? {
        state.withLockedValue { state in
            guard var observation = state.table.record(of: node)?.observation else { return nil }
            change(&observation)
            return state.table.apply(.observed(observation), to: node)
        }
    }

    /// The operator's mode override of `node`, if any.
    public func modeOverride(of node: NodeID) -> NodeMode? {
        state.withLockedValue { $0.table.record(of: node)?.modeOverride }
    }

    /// Takes a reloaded node list: nodes that stay keep their state (those in `readdressed`, with a
    /// changed address, only what the operator and the update run decided), new ones start from
    /// `initial`, removed ones take no new connections.
    public func replaceNodes(
        _ nodes: [NodeConfiguration],
        consolePolicy: ConsolePolicy,
        readdressed: Set<NodeID>,
        initial: (NodeID) -> NodeObservation
    ) {
        state.withLockedValue { state in
            state.table.replaceNodes(
                with: nodes.map { NodeRecord(id: $0.id, observation: initial($0.id)) }, readdressed: readdressed)
            state.table.consolePolicy = consolePolicy
            state.hosts = NodeHost.table(nodes, keeping: state.hosts)
        }
    }

    /// The update run under way, or nil: what the `freeze` console policy looks at, and the
    /// counts a refused client is told.
    public func setUpdate(_ progress: UpdateProgress?) {
        state.withLockedValue { $0.table.update = progress }
    }

    /// Starts `node`'s slow start: a growing share of new connections over `duration`.
    public func slowStart(_ node: NodeID, over duration: Duration) {
        state.withLockedValue { $0.table.slowStart(node, over: duration) }
    }

    // MARK: - Served device connections

    /// Device connections each node served through the balancer, for a driven update's canary gate:
    /// apart from the routing lock, so counting one never waits for a routing decision.
    private let served = NIOLockedValueBox<[NodeID: Int]>([:])
    /// Counting is on only while a driven update is under way: otherwise a connection's end costs
    /// one relaxed load, no lock.
    private let countingServed = Atomic<Bool>(false)

    /// Turns counting served device connections on (a driven update is under way) or off.
    public func countServedConnections(_ on: Bool) {
        countingServed.store(on, ordering: .relaxed)
    }

    /// A device connection relayed to `node` ended normally after the node had answered.
    public func deviceConnectionServed(by node: NodeID) {
        guard countingServed.load(ordering: .relaxed) else { return }
        served.withLockedValue { $0[node, default: 0] += 1 }
    }

    /// Device connections each node has served while counting was on.
    public func servedDeviceConnections() -> [NodeID: Int] {
        served.withLockedValue { $0 }
    }

    /// Connections and connect attempts currently counted against `node`.
    public func connections(to node: NodeID) -> Int {
        state.withLockedValue { $0.table.connections(to: node) }
    }

    /// The current state of `node`.
    public func status(of node: NodeID) -> NodeStatus? {
        state.withLockedValue { $0.table.status(of: node) }
    }

    /// Every node's state with its connection count, in configuration order.
    public func snapshot() -> [(status: NodeStatus, connections: Int)] {
        state.withLockedValue { state in
            state.table.nodes.map { ($0, state.table.connections(to: $0.id)) }
        }
    }
}
