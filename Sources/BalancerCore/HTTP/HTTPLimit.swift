/// A limit of a `by-path` listener that a client ran into (`http` settings). `label` is the
/// `limit` of `ums_balancer_http_limits_total`.
public enum HTTPLimit: Sendable, Hashable, CustomStringConvertible {
    /// A request head larger than `max_header_size` bytes: answered `431`, then closed.
    case headerSize(Int)
    /// More than `max_headers` header fields: answered `431`, then closed.
    case headerCount(Int)
    /// A request head (after the first) took longer than `header_timeout`: answered `408`, then closed.
    case headerTimeout(Duration)
    /// No request within `keep_alive_timeout` after the last one: closed without a word.
    case keepAliveTimeout(Duration)
    /// The connection served `max_requests`: the last answer says `Connection: close`.
    case maxRequests(Int)
    /// Bytes no HTTP parser accepts: answered `400`, then closed.
    case malformed(String)

    /// The metric label.
    public var label: String {
        switch self {
        case .headerSize: "header-size"
        case .headerCount: "header-count"
        case .headerTimeout: "header-timeout"
        case .keepAliveTimeout: "keep-alive-timeout"
        case .maxRequests: "max-requests"
        case .malformed: "malformed"
        }
    }

    /// The status the client is answered with before the connection closes (nil: none).
    public var status: Int? {
        switch self {
        case .headerSize, .headerCount: 431
        case .headerTimeout: 408
        case .malformed: 400
        case .keepAliveTimeout, .maxRequests: nil
        }
    }

    public var description: String {
        switch self {
        case .headerSize(let limit): "request head larger than \(limit) bytes (max_header_size)"
        case .headerCount(let limit): "more than \(limit) header fields (max_headers)"
        case .headerTimeout(let limit): "no complete request head within \(DurationText.format(limit)) (header_timeout)"
        case .keepAliveTimeout(let limit): "no request within \(DurationText.format(limit)) (keep_alive_timeout)"
        case .maxRequests(let limit): "served \(limit) requests (max_requests)"
        case .malformed(let detail): "malformed request: \(detail)"
        }
    }

    /// The connection's outcome when this limit closes it.
    public var outcome: ConnectionOutcome {
        switch self {
        case .keepAliveTimeout: .idleTimeout
        case .maxRequests: .closed
        default: .badRequest
        }
    }
}

/// An answer the balancer itself gives an HTTP client: a refusal, a gateway failure or a limit.
public struct BalancerAnswer: Sendable, Hashable {
    public var status: Int
    /// One line a person can read: the body.
    public var text: String
    /// `Retry-After` in seconds, for answers that a later try may get past.
    public var retryAfter: Int?

    public init(status: Int, text: String, retryAfter: Int? = nil) {
        self.status = status
        self.text = text
        self.retryAfter = retryAfter
    }

    /// The answer for a limit that answers (`status` not nil).
    public init?(_ limit: HTTPLimit) {
        guard let status = limit.status else { return nil }
        self.init(status: status, text: limit.description)
    }

    /// The reason phrase of `status`.
    public var reason: String {
        switch status {
        case 400: "Bad Request"
        case 408: "Request Timeout"
        case 431: "Request Header Fields Too Large"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        default: "Error"
        }
    }
}
