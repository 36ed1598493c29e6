import BalancerCore
import BalancerDataPath
import BalancerRelay
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

#if os(Linux)
import Glibc
#endif

/// One open listening socket, the settings its new connections follow, and its connections.
final class ListenerRuntime: Sendable {
    let socket: ListenerSocket
    let context: NIOLockedValueBox<NIOListenerContext>
    let connections: ListenerConnections

    init(socket: ListenerSocket, context: NIOLockedValueBox<NIOListenerContext>, connections: ListenerConnections) {
        self.socket = socket
        self.context = context
        self.connections = connections
    }

    /// New connections follow `context` from now on.
    func replaceContext(_ context: NIOListenerContext) {
        self.context.withLockedValue { $0 = context }
        #if os(Linux)
        if case .relay(_, let shared) = socket { shared.withLockedValue { $0 = context.shared } }
        #endif
    }
}

/// A listening socket: a NIO server channel, or (on Linux, listeners that terminate nothing) one
/// the relay loops accept from.
enum ListenerSocket: Sendable {
    case nio(any Channel)
    #if os(Linux)
    case relay(RelayListener, NIOLockedValueBox<ListenerContext>)
    #endif

    var localAddress: SocketAddress? {
        switch self {
        case .nio(let channel): channel.localAddress
        #if os(Linux)
        case .relay(let socket, _): socket.localAddress
        #endif
        }
    }

    /// Stops accepting; open connections stay.
    func close() async {
        switch self {
        case .nio(let channel): try? await channel.close()
        #if os(Linux)
        case .relay(let socket, _): await socket.close()
        #endif
        }
    }
}

extension Balancer {
    /// Binds `listeners`; if one fails, closes those just bound and throws: all or nothing.
    func bindListeners(
        _ listeners: [ListenerConfiguration],
        of configuration: BalancerConfiguration,
        inherited: SocketActivation? = nil
    ) async throws -> [String: ListenerRuntime] {
        var bound: [String: ListenerRuntime] = [:]
        for listener in listeners {
            let context = NIOLockedValueBox(makeContext(listener, of: configuration))
            let tag = connections.newListenerKey()
            do {
                let socket = try await openSocket(
                    listener, context: context, tag: tag, inherited: inherited?.descriptor(for: listener.name))
                bound[listener.name] = ListenerRuntime(
                    socket: socket, context: context, connections: connections.of(tag))
            } catch {
                for runtime in bound.values { await runtime.socket.close() }
                throw BalancerError.bindFailed(listener: listener.name, address: listener.bind, reason: "\(error)")
            }
        }
        return bound
    }

    /// Opens the listeners of the starting configuration.
    /// Opens the listeners of the starting configuration, on the sockets systemd passed where it
    /// passed one (a listener added by a later reload binds its own).
    func openListeners(_ listeners: [ListenerConfiguration]) async throws {
        let bound = try await bindListeners(listeners, of: configuration, inherited: socketActivation)
        state.withLockedValue { $0.listeners.merge(bound) { $1 } }
        for listener in listeners {
            logListening(
                listener, address: bound[listener.name]?.socket.localAddress,
                inherited: socketActivation?.descriptor(for: listener.name) != nil)
        }
    }

    func logListening(_ listener: ListenerConfiguration, address: SocketAddress? = nil, inherited: Bool = false) {
        var metadata: Logger.Metadata = [
            "listener": "\(listener.name)", "address": "\(listener.bind)",
            "class": "\(listener.classification.name)", "balance": "\(listener.balance.rawValue)",
        ]
        if inherited {
            // The socket systemd bound (its .socket unit's ListenStream=) is what clients reach.
            metadata["socket"] = "systemd"
            if let address { metadata["address"] = "\(address.ipAddress ?? "?"):\(address.port ?? 0)" }
        }
        logger.notice("listening", metadata: metadata)
    }

    func makeContext(_ listener: ListenerConfiguration, of configuration: BalancerConfiguration) -> NIOListenerContext {
        var tls: PathListenerTLS?
        if case .byPath(let settings) = listener.classification {
            // Read from the files each time, so a reload picks up renewed certificates.
            do {
                tls = try PathListenerTLS(settings)
            } catch {
                logger.error(
                    "cannot load the listener's TLS certificates: its connections are closed",
                    metadata: ["listener": "\(listener.name)", "error": "\(error)"])
            }
        }
        let shared = ListenerContext(
            configuration: listener, directory: directory, timeouts: configuration.timeouts,
            limits: configuration.limits, accessLogger: accessLogger, journal: journal,
            metrics: ListenerMetrics(listener: listener.name), admission: admission.listener(listener))
        return NIOListenerContext(shared: shared, tls: tls, group: group)
    }

    /// `inherited`: a listening socket systemd passed for this listener, used instead of binding.
    private func openSocket(
        _ listener: ListenerConfiguration,
        context: NIOLockedValueBox<NIOListenerContext>,
        tag: Int,
        inherited: Int32? = nil
    ) async throws -> ListenerSocket {
        #if os(Linux)
        // Listeners bound to an IP address that terminate nothing (fixed class, or SNI peeked from
        // the ClientHello) are relayed on the epoll loops; by-path listeners end TLS and speak HTTP: NIO.
        if dataPath == .automatic, listener.classification.relayable {
            let shared = NIOLockedValueBox(context.withLockedValue { $0.shared })
            if let inherited {
                let socket = try await RelayListener.adopt(
                    inherited, name: listener.name, context: shared, key: tag, registry: connections,
                    loops: try relayLoops())
                return .relay(socket, shared)
            }
            if let address = try? SocketAddress(ipAddress: listener.bind.host, port: listener.bind.port) {
                let socket = try await RelayListener.open(
                    address, name: listener.name, context: shared, key: tag, registry: connections,
                    loops: try relayLoops())
                return .relay(socket, shared)
            }
        }
        #endif
        let bootstrap = bootstrap(for: context, tag: tag)
        if let inherited { return .nio(try await bootstrap.withBoundSocket(inherited).get()) }
        return .nio(try await bootstrap.bind(host: listener.bind.host, port: listener.bind.port).get())
    }

    private func bootstrap(
        for context: NIOLockedValueBox<NIOListenerContext>,
        tag: Int
    ) -> ServerBootstrap {
        let registry = connections
        let sweepers = relaySweepers
        let budget = descriptors
        let name = context.withLockedValue { $0.shared.configuration.name }
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 4096)
            // One accept per read, so the descriptor budget is checked before each.
            .serverChannelOption(.maxMessagesPerRead, value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptBudgetHandler(budget: budget, listener: name))
                }
            }
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // TCP_NODELAY is NIO's default on the listening socket, and accepted sockets inherit it
            // (`.socketOption(.tcp_nodelay)` would set SO_DEBUG: it is an SOL_SOCKET option).
            .serverChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.autoRead, value: false)
            .childChannelOption(.recvAllocator, value: Balancer.receiveBuffers)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try Self.setUpConnection(
                        channel, context: context, tag: tag, registry: registry,
                        sweeper: sweepers.sweeper(for: channel.eventLoop))
                }
            }
    }

    #if os(Linux)
    /// The relay loops, started with the first relayed listener; as many as the event loops.
    private func relayLoops() throws -> RelayLoops {
        try relay.withLockedValue { state in
            switch state {
            case .running(let loops):
                return loops
            case .idle:
                let loops = try RelayLoops(
                    count: Array(group.makeIterator()).count, logger: logger, budget: descriptors)
                state = .running(loops)
                return loops
            case .stopped:
                throw BalancerError.shuttingDown
            }
        }
    }
    #endif

    /// Sets up the pipeline of an accepted client channel: a `by-path` listener's TLS and HTTP
    /// handlers, or the relay.
    private static func setUpConnection(
        _ channel: any Channel,
        context: NIOLockedValueBox<NIOListenerContext>,
        tag: Int,
        registry: ConnectionRegistry,
        sweeper: RelaySweeper?
    ) throws {
        // Each connection takes the listener's settings as they are when it arrives.
        let listener = context.withLockedValue { $0 }
        if case .byPath(let settings) = listener.shared.configuration.classification {
            try PathConnection.setUp(
                channel, listener: listener, settings: settings, listenerKey: tag, registry: registry,
                sweeper: sweeper)
            return
        }
        try NIORelay.attach(
            to: channel, listener: listener, listenerKey: tag, registry: registry, sweeper: sweeper)
    }

    func listenerRuntime(_ name: String) -> ListenerRuntime? {
        state.withLockedValue { $0.listeners[name] }
    }
}

extension ListenerClassification {
    /// Bytes pass through untouched (at most peeked), so the relay can carry them.
    var relayable: Bool {
        switch self {
        case .fixed, .bySNI: true
        case .byPath: false
        }
    }

    /// TLS is ended here.
    var terminatesTLS: Bool {
        if case .byPath = self { return true }
        return false
    }
}
