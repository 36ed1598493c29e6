import BalancerCore
import BalancerDataPath
import NIOCore
import NIOPosix
import NIOSSL

/// What the NIO executor adds to a listener's shared context: its TLS contexts (`by-path`) and
/// how it connects to nodes, one bootstrap per event loop.
struct NIOListenerContext: Sendable {
    var shared: ListenerContext
    /// The TLS contexts of a `by-path` listener; nil when its certificates could not be loaded.
    var tls: PathListenerTLS?
    /// How this listener connects to nodes, one per event loop: a connection's node channel
    /// shares its client channel's loop, and a bootstrap made per connection costs measurably.
    private(set) var nodeBootstraps: [ObjectIdentifier: LoopBootstrap] = [:]
    /// Connects to a node instead of the bootstraps: tests hand out embedded channels with it.
    var connector: (@Sendable (NodeTarget, any EventLoop) -> EventLoopFuture<any Channel>)?
    /// A `by-path` listener's idle node connections, one pool per event loop.
    private(set) var nodePools: NodePools?
    /// How a `by-path` listener connects to nodes, one per event loop: bare sockets, whose
    /// PROXY header, TLS and HTTP handlers the connection adds once connected.
    private var httpBootstraps: [ObjectIdentifier: LoopBootstrap] = [:]

    // ClientBootstrap is not Sendable; each of these is only used on its own event loop, and
    // connecting reads it without changing it.
    struct LoopBootstrap: @unchecked Sendable {
        var bootstrap: ClientBootstrap
    }

    init(
        shared: ListenerContext, tls: PathListenerTLS?, group: any EventLoopGroup,
        connector: (@Sendable (NodeTarget, any EventLoop) -> EventLoopFuture<any Channel>)? = nil
    ) {
        self.shared = shared
        self.tls = tls
        self.connector = connector
        if case .byPath(let settings) = shared.configuration.classification {
            nodePools = NodePools(group: group, directory: shared.directory, settings: settings.http)
            guard connector == nil else { return }
            for eventLoop in group.makeIterator() {
                httpBootstraps[ObjectIdentifier(eventLoop)] = LoopBootstrap(bootstrap: httpBootstrap(on: eventLoop))
            }
            return
        }
        guard connector == nil else { return }
        for eventLoop in group.makeIterator() {
            nodeBootstraps[ObjectIdentifier(eventLoop)] = LoopBootstrap(bootstrap: nodeBootstrap(on: eventLoop))
        }
    }

    /// Connects a `by-path` listener to `target` at `address` from `eventLoop` (the client's loop).
    func connectHTTP(
        to target: NodeTarget, at address: SocketAddress, on eventLoop: any EventLoop
    ) -> EventLoopFuture<any Channel> {
        if let connector { return connector(target, eventLoop) }
        let bootstrap = httpBootstraps[ObjectIdentifier(eventLoop)]?.bootstrap ?? httpBootstrap(on: eventLoop)
        return bootstrap.connect(to: address)
    }

    private func httpBootstrap(on eventLoop: any EventLoop) -> ClientBootstrap {
        ClientBootstrap(group: eventLoop)
            .connectTimeout(TimeAmount(shared.settings.connectTimeout))
            // TCP_NODELAY: ClientBootstrap sets it by default. A node's EOF ends its connection:
            // half-open connections are of no use to HTTP.
            .channelOption(.recvAllocator, value: Balancer.receiveBuffers)
    }

    /// Connects to `target` at `address` from `eventLoop` (where the client channel lives).
    func connect(
        to target: NodeTarget, at address: SocketAddress, on eventLoop: any EventLoop
    ) -> EventLoopFuture<any Channel> {
        if let connector { return connector(target, eventLoop) }
        let bootstrap = nodeBootstraps[ObjectIdentifier(eventLoop)]?.bootstrap ?? nodeBootstrap(on: eventLoop)
        return bootstrap.connect(to: address)
    }

    private func nodeBootstrap(on eventLoop: any EventLoop) -> ClientBootstrap {
        let backendTLS = tls?.backend
        return ClientBootstrap(group: eventLoop)
            .channelInitializer { channel in
                guard let backendTLS else { return channel.eventLoop.makeSucceededVoidFuture() }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        NIOSSLClientHandler(context: backendTLS, serverHostname: nil))
                }
            }
            .connectTimeout(TimeAmount(shared.settings.connectTimeout))
            // TCP_NODELAY: ClientBootstrap sets it by default.
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelOption(.recvAllocator, value: Balancer.receiveBuffers)
    }
}
