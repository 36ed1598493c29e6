/// What a `by-path` listener knows about a request head, as its HTTP codec decoded it.
public struct RequestFacts: Sendable, Hashable {
    public var method: String
    /// The request target as sent (`/a/b?q`, or absolute-form).
    public var target: String
    public var version: HTTPVersionNumber
    /// The values of every `Connection` field.
    public var connection: [String]
    /// An `Upgrade` field is present.
    public var upgrade: Bool
    /// A `Content-Length` field is present.
    public var contentLength: Bool
    /// The body is chunked (`Transfer-Encoding` ends in `chunked`).
    public var chunked: Bool
    /// Header fields received.
    public var headerCount: Int
    /// The request came on an HTTP/2 stream: no connection-level fields, and a body without
    /// `Content-Length` is known only once its first frame arrives.
    public var overHTTP2: Bool

    public init(
        method: String, target: String, version: HTTPVersionNumber = .http1_1, connection: [String] = [],
        upgrade: Bool = false, contentLength: Bool = false, chunked: Bool = false, headerCount: Int = 0,
        overHTTP2: Bool = false
    ) {
        self.method = method
        self.target = target
        self.version = version
        self.connection = connection
        self.upgrade = upgrade
        self.contentLength = contentLength
        self.chunked = chunked
        self.headerCount = headerCount
        self.overHTTP2 = overHTTP2
    }
}

/// What the balancer adds to every request it forwards: who the client is. Made once per
/// connection, so the certificate is encoded once, not per request.
public struct ClientIdentity: Sendable, Hashable {
    /// The client's IP address (the peer's, or the one a trusted front balancer named).
    public var address: String? {
        didSet { fields = Self.fields(address: address, certificateHeader: certificateHeader) }
    }
    /// The `X-SSL-CERT` value: the verified client certificate's PEM, URL-encoded; nil without one.
    public private(set) var certificateHeader: String?
    /// The fields every request of the connection gets: `X-Forwarded-For`, `X-Forwarded-Proto`, `X-SSL-CERT`.
    public private(set) var fields: [HeaderField]

    public init(address: String?, certificatePEM: String? = nil) {
        self.address = address
        let certificateHeader = certificatePEM.map(RequestPolicy.urlEncoded)
        self.certificateHeader = certificateHeader
        self.fields = Self.fields(address: address, certificateHeader: certificateHeader)
    }

    private static func fields(address: String?, certificateHeader: String?) -> [HeaderField] {
        var fields: [HeaderField] = []
        if let address { fields.append(HeaderField("X-Forwarded-For", address)) }
        fields.append(HeaderField("X-Forwarded-Proto", "https"))
        if let certificateHeader {
            fields.append(HeaderField(RequestPolicy.clientCertificateHeader, certificateHeader))
        }
        return fields
    }
}

/// How a request body reaches the node.
public enum RequestBody: Sendable, Hashable {
    /// No body: nothing follows the head.
    case none
    /// Framed as the client framed it (`Content-Length` or chunked), forwarded as it streams.
    case asReceived
    /// An HTTP/2 request without `Content-Length`: the next part decides (the end: no body; a
    /// body part: forwarded chunked).
    case decidedByFirstPart
}

/// How the balancer forwards one request: its class, and the head as the node gets it.
public struct RequestForwarding: Sendable, Hashable {
    public var trafficClass: TrafficClass
    /// The path, for the access log (at most 200 characters).
    public var path: String
    /// Field names (lowercased) to remove from the head: hop-by-hop fields, and what the
    /// balancer sets itself, which no client may forge.
    public var removing: [String]
    /// Fields to add after removing.
    public var adding: [HeaderField]
    /// The client asks to switch protocols (a WebSocket): relayed as bytes after a `101`.
    public var upgrade: Bool
    /// The client may send another request on its connection after this one (HTTP/1.x).
    public var clientKeepAlive: Bool
    public var body: RequestBody
    /// Safe to send again on another connection if the node closes before answering: an
    /// idempotent method (RFC 9110 9.2.2) and no body, so the whole request is still at hand.
    public var retryable: Bool
}

/// The per-request rules of a `by-path` listener: classification, the fields a reverse proxy
/// sets and strips (RFC 9110 7.6.1), keep-alive and retry safety. Pure: the NIO handlers apply
/// what it decides to their codecs' heads.
public enum RequestPolicy {
    /// The header that carries the client certificate to the node, as UMS expects behind a TLS-offloading proxy.
    public static let clientCertificateHeader = "X-SSL-CERT"

    /// Hop-by-hop fields (RFC 9110 7.6.1): meant for the balancer, never forwarded.
    static let hopByHop: Set<String> = ["connection", "keep-alive", "proxy-connection", "te", "upgrade"]
    /// Fields only the balancer may set; a client's are dropped.
    static let setByBalancer: [String] = ["x-ssl-cert", "x-forwarded-for", "x-forwarded-proto"]
    /// What every request loses, made once (requests share the array until one needs more).
    static let removedAlways = ["connection", "keep-alive", "proxy-connection", "te", "upgrade"] + setByBalancer
    /// The same for an upgrade, which keeps its `Upgrade` field.
    static let removedOnUpgrade = removedAlways.filter { $0 != "upgrade" }
    /// Fields that frame the message: a `Connection` token naming one never removes it, or client
    /// and node would read the body differently.
    static let framing: Set<String> = ["content-length", "transfer-encoding", "host"]
    /// RFC 9110 9.2.2.
    static let idempotentMethods: Set<String> = ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]

    /// How to forward `request` from `client` under `rules`; `lastRequest` when the connection
    /// has reached `max_requests` (or the balancer is shutting down) and closes after this one.
    public static func forwarding(
        _ request: RequestFacts, client: ClientIdentity, rules: PathRules, lastRequest: Bool = false
    ) -> RequestForwarding {
        let options = ConnectionOptions(request.connection)
        let upgrade = request.upgrade && options.upgrade && !request.overHTTP2
        var removing = upgrade ? removedOnUpgrade : removedAlways
        // Other fields a client lists in Connection are hop-by-hop too.
        for name in options.others where !framing.contains(name) && !hopByHop.contains(name) && !removing.contains(name)
        {
            removing.append(name)
        }
        var adding = client.fields
        // The node must see the upgrade the client asked for, and nothing else the client listed.
        if upgrade { adding.append(HeaderField("Connection", "Upgrade")) }
        let keepAlive =
            !lastRequest && !upgrade && !request.overHTTP2
            && (request.version.keepsAliveByDefault ? !options.close : options.keepAlive)
        let body: RequestBody =
            if request.contentLength || request.chunked {
                .asReceived
            } else if request.overHTTP2 {
                .decidedByFirstPart
            } else {
                .none
            }
        let path = PathRules.path(of: request.target)
        let trafficClass = path.map(rules.classify(path:)) ?? .console
        let shown = path ?? request.target
        return RequestForwarding(
            trafficClass: trafficClass, path: shown.utf8.count > 200 ? String(shown.prefix(200)) : shown,
            removing: removing,
            adding: adding, upgrade: upgrade, clientKeepAlive: keepAlive, body: body,
            retryable: body == .none && idempotentMethods.contains(request.method))
    }

    /// Percent-encodes everything but RFC 3986 unreserved characters (as nginx's `$ssl_client_escaped_cert`).
    public static func urlEncoded(_ text: String) -> String {
        let hex = Array("0123456789ABCDEF".unicodeScalars)
        var encoded = String.UnicodeScalarView()
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                encoded.append(Unicode.Scalar(byte))
            default:
                encoded.append("%")
                encoded.append(hex[Int(byte >> 4)])
                encoded.append(hex[Int(byte & 0x0F)])
            }
        }
        return String(encoded)
    }
}
