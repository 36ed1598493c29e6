/// The time limits of a `by-path` client connection.
public struct HTTPConnectionTimeouts: Sendable, Hashable {
    /// `handshake_timeout`: the TLS handshake plus the first request head.
    public var handshake: Duration
    /// `timeouts.idle`: no byte either way while a request is served, or on an upgraded connection.
    public var idle: Duration

    public init(handshake: Duration, idle: Duration) {
        self.handshake = handshake
        self.idle = idle
    }
}

/// What the executor of a client connection does next.
public enum HTTPConnectionAction: Sendable, Hashable {
    /// Nothing until the next event.
    case none
    /// Read the next request.
    case readNext
    /// Close the connection: it is over.
    case close(ConnectionEnd)
    /// Tell the client why (a `4xx`), then close.
    case answerAndClose(BalancerAnswer, ConnectionEnd)
}

/// What becomes of a request head that arrived.
public enum RequestAdmission: Sendable, Hashable {
    /// Serve it; `last`: the connection closes after it (`max_requests`, shutdown).
    case serve(last: Bool)
    /// Answer it with a refusal and close (the connection was refused as it was accepted).
    case refuse(BalancerAnswer, ConnectionEnd)
    /// A limit rejects it: answer and close.
    case reject(BalancerAnswer, ConnectionEnd)
}

/// The life of one client connection of a `by-path` listener, HTTP/1.1 or HTTP/2, with no
/// sockets in it: handshake, requests one after another (or side by side on HTTP/2), the
/// idle time between them, the limits, and how the connection ends. Each request's way to a
/// node is `HTTPExchangeMachine`'s.
public struct HTTPConnectionMachine: Sendable {
    /// Where the connection stands.
    public enum Phase: Sendable, Hashable {
        /// The TLS handshake is under way.
        case handshaking
        /// Waiting for the first byte of a request.
        case awaitingRequest
        /// Part of a request head has arrived.
        case readingHead
        /// Requests are in flight.
        case serving
        /// Upgraded: bytes are relayed both ways.
        case tunnel
        /// Over: `end` says how.
        case closed
    }

    public let settings: HTTPSettings
    public let timeouts: HTTPConnectionTimeouts
    public private(set) var phase = Phase.handshaking
    /// Requests started on this connection.
    public private(set) var requests = 0
    /// Requests in flight (HTTP/1: at most one).
    public private(set) var inFlight = 0
    /// How the connection ended; the first reason wins.
    public private(set) var end: ConnectionEnd?
    /// The limit the client ran into, if one closed the connection.
    public private(set) var limitHit: HTTPLimit?
    /// The balancer is shutting down (or the listener was removed): no request after the one in flight.
    public private(set) var quiescing = false
    /// A limit refused the connection as it was accepted: its first request is answered with this.
    private var refusal: (answer: BalancerAnswer, end: ConnectionEnd)?
    private var deadline: MonotonicInstant?
    private var lastActivity: MonotonicInstant

    /// A connection accepted at `now`.
    public init(settings: HTTPSettings, timeouts: HTTPConnectionTimeouts, now: MonotonicInstant) {
        self.settings = settings
        self.timeouts = timeouts
        self.lastActivity = now
        self.deadline = now + timeouts.handshake
    }

    /// How often the executor must call `tick(now:)`.
    public var shortestTimeout: Duration {
        min(timeouts.handshake, timeouts.idle, settings.headerTimeout, settings.keepAliveTimeout)
    }

    /// A limit refused the connection as it was accepted: its first request is answered `503`
    /// with `text`, then it closes.
    public mutating func refuse(_ end: ConnectionEnd, text: String) {
        refusal = (BalancerAnswer(status: 503, text: text, retryAfter: 30), end)
    }

    // MARK: - Requests

    /// The TLS handshake is done (the first request head still falls under `handshake_timeout`).
    public mutating func handshakeCompleted(now: MonotonicInstant) {
        guard phase == .handshaking else { return }
        phase = .awaitingRequest
        lastActivity = now
    }

    /// Bytes arrived while no request was in flight: a head has begun.
    public mutating func bytesArrived(now: MonotonicInstant) {
        lastActivity = now
        guard phase == .awaitingRequest else { return }
        phase = .readingHead
        // The first head stays under the handshake deadline; later ones get `header_timeout`.
        if requests > 0 { deadline = now + settings.headerTimeout }
    }

    /// A complete request head with `headerCount` fields arrived.
    public mutating func requestStarted(headerCount: Int, now: MonotonicInstant) -> RequestAdmission {
        lastActivity = now
        if let refusal {
            _ = close(refusal.end)
            return .refuse(refusal.answer, refusal.end)
        }
        // An HTTP/2 stream opened while the connection closes (after a GOAWAY): not served.
        guard phase != .closed else {
            return .reject(
                BalancerAnswer(status: 503, text: "the connection is closing", retryAfter: 0), end ?? .closed)
        }
        guard headerCount <= settings.maxHeaders else { return reject(.headerCount(settings.maxHeaders)) }
        guard requests < settings.maxRequests else {
            // Only HTTP/2 gets here (HTTP/1 closed after the last): a stream opened before our GOAWAY arrived.
            return .reject(
                BalancerAnswer(
                    status: 503, text: HTTPLimit.maxRequests(settings.maxRequests).description, retryAfter: 0),
                ConnectionEnd(.closed, .httpLimit(.maxRequests(settings.maxRequests))))
        }
        requests += 1
        inFlight += 1
        phase = .serving
        deadline = nil
        let last = requests == settings.maxRequests
        if last { limitHit = .maxRequests(settings.maxRequests) }
        return .serve(last: last || quiescing)
    }

    /// A request is done; `keepAlive`: the client may send another on this connection.
    public mutating func requestFinished(keepAlive: Bool, now: MonotonicInstant) -> HTTPConnectionAction {
        guard phase == .serving else { return .none }
        inFlight = max(0, inFlight - 1)
        lastActivity = now
        guard inFlight == 0 else { return .none }
        if !keepAlive || quiescing {
            return close(
                limitHit.map { ConnectionEnd($0.outcome, .httpLimit($0)) } ?? (quiescing ? .shutdown : .closed))
        }
        phase = .awaitingRequest
        deadline = now + settings.keepAliveTimeout
        return .readNext
    }

    /// The node switched protocols: from now on the connection is a byte relay.
    public mutating func upgraded(now: MonotonicInstant) {
        guard phase == .serving else { return }
        phase = .tunnel
        lastActivity = now
        deadline = nil
    }

    /// Bytes moved for a request in flight or a tunnel.
    public mutating func activity(now: MonotonicInstant) {
        lastActivity = now
    }

    /// A request head grew past `max_header_size` before it was complete.
    public mutating func headTooLarge() -> HTTPConnectionAction {
        answerAndClose(.headerSize(settings.maxHeaderSize))
    }

    /// The client sent what no HTTP parser accepts.
    public mutating func malformed(_ detail: String) -> HTTPConnectionAction {
        answerAndClose(.malformed(detail))
    }

    // MARK: - Time and the balancer

    /// Time passed: handshake, header, keep-alive and idle limits.
    public mutating func tick(now: MonotonicInstant) -> HTTPConnectionAction {
        switch phase {
        case .handshaking, .awaitingRequest, .readingHead:
            guard let deadline, now >= deadline else { return .none }
            if requests == 0 {
                let what = phase == .handshaking ? "TLS handshake and request head" : "request head"
                return close(
                    ConnectionEnd(.handshakeFailed, .handshake(.timeout(what: what, limit: timeouts.handshake))))
            }
            if phase == .readingHead { return answerAndClose(.headerTimeout(settings.headerTimeout)) }
            limitHit = .keepAliveTimeout(settings.keepAliveTimeout)
            return close(ConnectionEnd(.idleTimeout, .httpLimit(.keepAliveTimeout(settings.keepAliveTimeout))))
        case .serving, .tunnel:
            guard now - lastActivity >= timeouts.idle else { return .none }
            return close(.idleTimeout)
        case .closed:
            return .none
        }
    }

    /// The balancer stops (shutdown, listener removed): an idle connection closes now, a busy one
    /// after the request in flight.
    public mutating func quiesce() -> HTTPConnectionAction {
        guard phase != .closed else { return .none }
        quiescing = true
        switch phase {
        case .handshaking, .awaitingRequest: return close(.shutdown)
        default: return .none
        }
    }

    /// The connection ended for a reason found outside (the client left, a socket failed, the
    /// balancer closed it for good); the first reason recorded wins.
    public mutating func ended(_ why: ConnectionEnd) {
        _ = close(why)
    }

    private mutating func reject(_ limit: HTTPLimit) -> RequestAdmission {
        guard case .answerAndClose(let answer, let end) = answerAndClose(limit) else {
            return .reject(BalancerAnswer(status: 400, text: limit.description), end ?? .closed)
        }
        return .reject(answer, end)
    }

    private mutating func answerAndClose(_ limit: HTTPLimit) -> HTTPConnectionAction {
        limitHit = limit
        let end = ConnectionEnd(limit.outcome, .httpLimit(limit))
        guard let answer = BalancerAnswer(limit) else { return close(end) }
        _ = close(end)
        return .answerAndClose(answer, self.end ?? end)
    }

    private mutating func close(_ why: ConnectionEnd) -> HTTPConnectionAction {
        if end == nil { end = why }
        phase = .closed
        deadline = nil
        return .close(end!)
    }
}
