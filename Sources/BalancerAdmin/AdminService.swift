import BalancerCore
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// The admin HTTP API as a `Service` for the balancer's `ServiceGroup`: serves `AdminAPI` on the
/// configured bind until graceful shutdown, finishing the requests already received.
///
/// It runs on NIO's shared singleton event loops, not the data path's: operator traffic never
/// competes with proxied connections, and a dashboard's keep-alive connection still open at exit
/// cannot outlive the loops it runs on (the balancer shuts its own group down after the services).
public struct AdminService: Service {
    private let application: Application<RouterResponder<AdminRequestContext>>

    /// Serves `api` on `settings.bind`; `token` nil means no token is asked for (loopback only,
    /// see `AdminToken.load`). `onListening` gets the bound address.
    public init(
        api: AdminAPI,
        settings: AdminSettings,
        token: AdminToken?,
        logger: Logger,
        onListening: @escaping @Sendable (SocketAddress) async -> Void = { _ in }
    ) {
        self.init(api: api, settings: settings, tokens: AdminTokens(token), logger: logger, onListening: onListening)
    }

    /// Serves `api` on `settings.bind`, asking for the token `tokens` holds at each request.
    public init(
        api: AdminAPI,
        settings: AdminSettings,
        tokens: AdminTokens,
        logger: Logger,
        onListening: @escaping @Sendable (SocketAddress) async -> Void = { _ in }
    ) {
        let bind = settings.bind
        let token = tokens.token
        application = Application(
            router: api.router(tokens: tokens),
            configuration: .init(address: .hostname(bind.host, port: bind.port), serverName: "ums-balancer"),
            onServerRunning: { channel in
                let url = channel.localAddress.map(AdminService.url(of:)) ?? "\(bind)"
                logger.notice(
                    "admin API listening",
                    metadata: ["url": "\(url)", "auth": "\(token == nil ? "none (loopback only)" : "bearer token")"])
                if let address = channel.localAddress { await onListening(address) }
            },
            eventLoopGroupProvider: .singleton,
            logger: logger
        )
    }

    public func run() async throws {
        try await application.run()
    }

    /// `http://127.0.0.1:9900`, `http://[::1]:9900`.
    static func url(of address: SocketAddress) -> String {
        let host = address.ipAddress ?? "localhost"
        return "http://\(host.contains(":") ? "[\(host)]" : host):\(address.port ?? 0)"
    }
}
