/// The `http` settings of a `by-path` listener: the limits every request must keep, and how long
/// connections are kept alive on either side.
public struct HTTPSettings: Sendable, Hashable {
    /// `max_header_size`: the most bytes one request head may take (request line and fields).
    public var maxHeaderSize = 16 * 1024
    /// `max_headers`: the most header fields one request may carry.
    public var maxHeaders = 100
    /// `header_timeout`: how long a request head may take once its first byte arrived (every
    /// request after the first; the first is bounded by the listener's `handshake_timeout`).
    public var headerTimeout: Duration = .seconds(10)
    /// `keep_alive_timeout`: how long a client connection may wait for its next request.
    public var keepAliveTimeout: Duration = .seconds(60)
    /// `max_requests`: requests served on one client connection; the last is answered with
    /// `Connection: close` (HTTP/2: a GOAWAY).
    public var maxRequests = 1000
    /// `node_idle_timeout`: how long an unused keep-alive connection to a node is kept for the next request.
    public var nodeIdleTimeout: Duration = .seconds(15)
    /// `node_idle_connections`: unused keep-alive connections kept per node on each event loop.
    public var nodeIdleConnections = 64

    public init() {}

    /// The bounds `check-config` enforces, for messages and tests.
    public static let headerSizeRange = 1024...(1024 * 1024)
    public static let headerCountRange = 1...10_000
    public static let requestsRange = 1...1_000_000
    public static let idleConnectionsRange = 0...10_000
}
