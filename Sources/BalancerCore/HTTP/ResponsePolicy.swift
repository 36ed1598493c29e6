/// What a `by-path` listener knows about a node's response head, and the request it answers.
public struct ResponseFacts: Sendable, Hashable {
    public var status: Int
    /// The node's HTTP version.
    public var version: HTTPVersionNumber
    /// The values of every `Connection` field.
    public var connection: [String]
    public var contentLength: Bool
    public var chunked: Bool
    /// The request was a `HEAD`: the response has no body, whatever its fields say.
    public var toHEAD: Bool

    public init(
        status: Int, version: HTTPVersionNumber = .http1_1, connection: [String] = [], contentLength: Bool = false,
        chunked: Bool = false, toHEAD: Bool = false
    ) {
        self.status = status
        self.version = version
        self.connection = connection
        self.contentLength = contentLength
        self.chunked = chunked
        self.toHEAD = toHEAD
    }

    /// A `1xx` other than `101`: another head follows.
    public var isInformational: Bool { (100..<200).contains(status) && status != 101 }

    /// Status and method allow a body (RFC 9112 6.3).
    public var hasBody: Bool { !toHEAD && !(100..<200).contains(status) && status != 204 && status != 304 }

    /// The body runs until the node closes: no length and not chunked.
    public var closeDelimited: Bool { hasBody && !contentLength && !chunked }
}

/// How the client side frames a response body.
public enum ResponseFraming: Sendable, Hashable {
    /// As the node framed it (`Content-Length`, chunked, or no body at all).
    case asReceived
    /// The node's body runs until it closes: forwarded chunked, so the client connection stays usable.
    case chunked
    /// The body runs until the client connection closes (an HTTP/1.0 client, which reads no chunks).
    case untilClose
}

/// How the balancer forwards one response head, and what becomes of both connections after it.
public struct ResponseForwarding: Sendable, Hashable {
    /// Field names (lowercased) to remove: hop-by-hop fields and those the node's `Connection` lists.
    public var removing: [String]
    /// Fields to add after removing.
    public var adding: [HeaderField]
    public var framing: ResponseFraming
    /// A `1xx` (say `100 Continue`): passed on, and the final head is still to come.
    public var informational: Bool
    /// Forward nothing of it (an informational head to an HTTP/1.0 client, which expects none).
    public var drop: Bool
    /// A `101` to an upgrade request: after the head, bytes are relayed both ways.
    public var tunnel: Bool
    /// The client connection takes another request once this response is complete.
    public var clientKeepAlive: Bool
    /// The node connection may carry another request once this response is complete.
    public var nodeReusable: Bool
}

/// The rules for a response on its way back to the client (RFC 9110 7.6.1, RFC 9112 6 and 9.3).
public enum ResponsePolicy {
    /// Hop-by-hop fields every answer loses, made once.
    static let removedAlways = ["connection", "keep-alive", "proxy-connection", "te", "upgrade"]
    /// A `101` keeps `Upgrade` and `Connection`: the client must see what it switched to.
    static let removedOnSwitch = ["keep-alive", "proxy-connection", "te"]

    /// How to forward `response` to a request forwarded as `request`, to a client speaking
    /// `clientVersion` (nil: an HTTP/2 stream, where the codec frames and connection fields do not exist).
    public static func forwarding(
        _ response: ResponseFacts, request: RequestForwarding, clientVersion: HTTPVersionNumber?
    ) -> ResponseForwarding {
        let options = ConnectionOptions(response.connection)
        let tunnel = request.upgrade && response.status == 101
        var removing = tunnel ? Self.removedOnSwitch : Self.removedAlways
        for name in options.others
        where !RequestPolicy.framing.contains(name) && !RequestPolicy.hopByHop.contains(name)
            && !removing.contains(name)
        {
            removing.append(name)
        }
        let nodeKeepsAlive =
            response.version.keepsAliveByDefault ? !options.close : options.keepAlive
        let informational = response.isInformational
        guard !informational else {
            return ResponseForwarding(
                removing: removing, adding: [], framing: .asReceived, informational: true,
                drop: clientVersion.map { !$0.keepsAliveByDefault } ?? false, tunnel: false,
                clientKeepAlive: request.clientKeepAlive, nodeReusable: nodeKeepsAlive)
        }
        var framing = ResponseFraming.asReceived
        var clientKeepAlive = request.clientKeepAlive && !request.upgrade
        if let clientVersion, response.hasBody {
            if !clientVersion.keepsAliveByDefault, response.chunked || response.closeDelimited {
                framing = .untilClose
                clientKeepAlive = false
                removing.append("transfer-encoding")
            } else if response.closeDelimited {
                framing = .chunked
            }
        } else if clientVersion != nil, !response.hasBody, response.chunked {
            // No body follows (HEAD, 204, 304): a chunked field would make the encoder end a body that never began.
            removing.append("transfer-encoding")
        }
        var adding: [HeaderField] = []
        if framing == .chunked { adding.append(HeaderField("Transfer-Encoding", "chunked")) }
        if let clientVersion, !tunnel {
            if !clientKeepAlive {
                adding.append(HeaderField("Connection", "close"))
            } else if !clientVersion.keepsAliveByDefault {
                adding.append(HeaderField("Connection", "keep-alive"))
            }
        }
        return ResponseForwarding(
            removing: removing, adding: adding, framing: framing, informational: false, drop: false, tunnel: tunnel,
            clientKeepAlive: clientKeepAlive && !tunnel,
            nodeReusable: nodeKeepsAlive && !response.closeDelimited && !request.upgrade)
    }
}
