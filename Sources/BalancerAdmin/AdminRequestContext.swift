import Hummingbird
import NIOCore

/// A request's context: Hummingbird's core storage plus who is asking.
public struct AdminRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The client's address, when the channel has one.
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }

    /// Who to record in the journal: `admin-api 127.0.0.1:54321`.
    public var actor: String {
        guard let address = remoteAddress, let ip = address.ipAddress, let port = address.port else {
            return "admin-api"
        }
        return ip.contains(":") ? "admin-api [\(ip)]:\(port)" : "admin-api \(ip):\(port)"
    }
}
