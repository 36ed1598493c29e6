/// Where a connection may be sent: a node and whatever the executor needs to connect to it.
public protocol RelayTarget: Sendable {
    /// The node this target belongs to.
    var node: NodeID { get }
}

/// What one listener's connections follow: how they are classified and their time limits.
public struct ConnectionSettings: Sendable, Hashable {
    /// How a connection's traffic class is decided.
    public enum Classification: Sendable, Hashable {
        /// Every connection has this class: routed at once.
        case fixed(TrafficClass)
        /// The server name of the TLS ClientHello decides (`by-sni`), read before routing and
        /// replayed to the node untouched.
        case clientHello(SNIRules)
        /// Classified per request by a `by-path` listener's HTTP proxy, which runs no connection
        /// machine: its settings carry only the listener's time limits.
        case external
    }

    public var classification: Classification
    /// How long one connect attempt may take before the next node is tried.
    public var connectTimeout: Duration
    /// A connection with no bytes moving either way for this long is closed.
    public var idleTimeout: Duration
    /// How long a `by-sni` connection may take to send its complete ClientHello.
    public var handshakeTimeout: Duration
    /// How long bytes already queued for one side may take to leave once the other side is gone.
    public var lingerLimit: Duration
    /// The most a client may have sent before its node's first byte for a redispatch to stay possible.
    public var replayLimit: Int
    /// How long a connection waits for a slot when every eligible node is at its `max_connections`.
    public var queueTimeout: Duration
    /// `proxy_protocol.from`: connections from these sources must begin with a PROXY header, and
    /// a header from any other source is refused; nil when the listener takes no PROXY headers.
    public var proxyProtocolFrom: [AddressRange]?
    /// `send_proxy`: the PROXY protocol version (1 or 2) each node connection begins with.
    public var sendProxy: Int?

    /// The default replay limit: far above any ClientHello or request a device sends first.
    public static let defaultReplayLimit = 64 * 1024

    public init(
        classification: Classification,
        connectTimeout: Duration,
        idleTimeout: Duration,
        handshakeTimeout: Duration,
        lingerLimit: Duration? = nil,
        replayLimit: Int = defaultReplayLimit,
        queueTimeout: Duration = .seconds(5)
    ) {
        self.classification = classification
        self.connectTimeout = connectTimeout
        self.idleTimeout = idleTimeout
        self.handshakeTimeout = handshakeTimeout
        self.lingerLimit = lingerLimit ?? idleTimeout
        self.replayLimit = replayLimit
        self.queueTimeout = queueTimeout
        self.proxyProtocolFrom = nil
        self.sendProxy = nil
    }
}

/// What the executor must do next for one connection.
public enum ConnectionAction<Target: RelayTarget>: Sendable {
    /// Nothing, until the next event.
    case none
    /// Read more of the client's first bytes and pass them all to `clientPreamble(_:endOfInput:now:)`.
    case readPreamble
    /// Ask routing where a connection of this class goes; answer with `routed(_:now:)` or `refused(_:)`.
    case route(TrafficClass)
    /// Close the current node socket, if any, and connect to this target; answer with
    /// `connected(now:)` or `connectFailed(_:now:)`.
    case dial(Target)
    /// The node is connected: send it the bytes kept for replay first (if `replay`), then shut
    /// its writing side down (if `halfCloseNode`: the client already sent its EOF), and relay both ways.
    case startRelay(replay: Bool, halfCloseNode: Bool)
    /// Shut down writing to `side` once the bytes queued for it are out (its partner sent EOF).
    case halfClose(ConnectionSide)
    /// Both directions are done: once nothing is queued for either side, call `pendingWritten(now:)`.
    case finishWhenFlushed
    /// The other side is gone: close it, keep writing what is queued for `survivor`, and call
    /// `pendingWritten(now:)` once that is out.
    case linger(survivor: ConnectionSide)
    /// Close both sockets: the connection is over.
    case close(ConnectionEnd)
}

extension ConnectionAction: Equatable where Target: Equatable {}

/// What to do with bytes just read from one side, besides forwarding them to the other.
public enum ReadVerdict: Sendable, Hashable {
    /// Forward them.
    case forward
    /// Forward them (once a node is connected) and keep a copy: the node may still be replaced.
    case keepForReplay
    /// Forward them and let go of the bytes kept for replay: no redispatch is possible any more.
    case dropReplay
    /// Do not forward them: the connection is over.
    case close(ConnectionEnd)
}

/// The life of one proxied connection, with no sockets in it: events in, actions out.
///
/// Both data paths (the epoll relay and the NIO handlers) are executors of this machine: they
/// move the bytes and report what their sockets do; every decision — classify, route, which node
/// next, replay, redispatch after a silent close, half-close, linger, time out, how it ended —
/// is made here, so the two paths cannot behave differently.
///
/// The rules users rely on: no client byte is read before a node is connected (except what a
/// classifier must read); a failed connect is retried on the next node before the client
/// notices; a node that closes without sending a byte is replaced by the next with everything
/// the client sent replayed, while that is at most `replayLimit`; an EOF becomes the other
/// side's half-close once what is queued for it is out; a reset after a complete exchange is a
/// normal close; no bytes either way for `idleTimeout` closes both sides.
public struct ConnectionMachine<Target: RelayTarget>: Sendable {
    /// Where the connection stands.
    public enum Phase: Sendable, Hashable {
        /// Reading what the listener classifies by.
        case classifying
        /// Waiting for routing's answer.
        case routing
        /// Every eligible node is at its limit: waiting for a slot until the queue timeout.
        case queued
        /// Connecting to a node.
        case connecting
        /// Both sides connected; bytes move.
        case relaying
        /// Both directions done; the last queued bytes are leaving.
        case finishing
        /// One side failed; the other gets what was queued for it.
        case lingering
        /// Over: `end` says how.
        case ended
    }

    public let settings: ConnectionSettings
    public private(set) var phase: Phase
    /// The class routing uses: the listener's until classified.
    public private(set) var trafficClass: TrafficClass
    /// How a classifying listener decided the class (`sni=...`, `GET /path`), for the access log.
    public private(set) var classified: String?
    /// The node currently connected (or last connected): the access log's `node`.
    public private(set) var node: NodeID?
    /// Times the client was handed to another node after one closed without answering.
    public private(set) var retries = 0
    /// Every node that let this connection down, in order (the access log).
    public private(set) var failures: [NodeFailure] = []
    /// The failures passive health holds against their nodes, in the order they were settled. A
    /// node that closed without a byte after the client's bytes is held to account only once
    /// another node answered the same bytes: bytes every node closes on (junk on a TLS port, say)
    /// say something about the client, and must not let any client take healthy nodes out of rotation.
    public private(set) var blamed: [NodeFailure] = []
    /// Silent closes after the client's bytes, until another node answers them.
    private var blamedIfAnotherAnswers: [NodeFailure] = []
    /// How the connection ended; the first reason wins, later ones are consequences.
    public private(set) var end: ConnectionEnd?
    /// The client as a trusted front balancer's PROXY header named it (nil: the peer itself).
    public private(set) var proxiedClient: ProxyHeader.Address?
    /// Where that client connected to, by the same header.
    public private(set) var proxiedDestination: ProxyHeader.Address?
    /// Bytes the PROXY header took at the start of the client's preamble: not the node's to see.
    public private(set) var proxyHeaderLength = 0
    /// The connection must begin with a PROXY header, until it has.
    private var awaitsProxyHeader = false
    /// The connection comes from a source that may not send one: its first bytes are screened.
    public private(set) var screensForProxyHeader = false

    /// Bytes read from the client (classifier's peek included) and from nodes.
    public private(set) var bytesFromClient = 0
    public private(set) var bytesFromNode = 0

    private var targets: [Target] = []
    private var nextTarget = 0
    private var current: Target?

    /// The target being dialled or relayed to.
    public var currentTarget: Target? { current }
    /// Relaying, and every byte read from now on is only forwarded: no replay is kept (the node
    /// answered, or the client sent more than the limit) and nothing is screened. An executor may
    /// then move the bytes without looking at them (the relay's splice path).
    public var forwardsOnly: Bool { phase == .relaying && replayed == nil && !screensForProxyHeader }
    private var bytesFromCurrentNode = 0
    /// Bytes the current node was sent (the replay included), and when it was connected: a node
    /// that closes without a byte after a request, or at once, let the connection down.
    private var bytesToCurrentNode = 0
    private var connectedAt: MonotonicInstant?
    /// Bytes the executor keeps for a replay; nil once a replay is no longer possible.
    private var replayed: Int? = 0
    private var clientInputEnded = false
    private var nodeInputEnded = false
    /// Writing to that side is shut down (or will be, once its queue is out).
    private var clientOutputClosed = false
    private var nodeOutputClosed = false
    private var clientFailed = false
    private var deadline: MonotonicInstant?
    /// While queued (and routed again on each tick): when the wait for a slot ends.
    private var queueDeadline: MonotonicInstant?
    private var lastActivity: MonotonicInstant

    /// A connection just accepted at `now`; call `start(now:)` next.
    /// A connection from the peer address `peer` (4 or 16 bytes, when known), accepted at `now`.
    public init(
        settings: ConnectionSettings, now: MonotonicInstant, initialClass: TrafficClass? = nil, peer: [UInt8]? = nil
    ) {
        self.settings = settings
        self.phase = .classifying
        self.lastActivity = now
        if let trusted = settings.proxyProtocolFrom {
            let fromTrusted = peer.map { ip in trusted.contains { $0.contains(ip) } } ?? false
            awaitsProxyHeader = fromTrusted
            screensForProxyHeader = !fromTrusted
        }
        switch settings.classification {
        case .fixed(let trafficClass): self.trafficClass = trafficClass
        case .clientHello(let rules): self.trafficClass = initialClass ?? rules.defaultClass
        case .external: self.trafficClass = initialClass ?? .console
        }
    }

    /// The earliest time `tick(now:)` has something to check: how often an executor must look.
    public var shortestTimeout: Duration {
        min(settings.idleTimeout, settings.connectTimeout, settings.handshakeTimeout, settings.queueTimeout)
    }

    /// A limit of the balancer or its listener refuses the connection as it is accepted.
    public mutating func limitReached(_ limit: ConnectionLimit) -> ConnectionAction<Target> {
        guard phase != .ended else { return .none }
        return refuse(ConnectionEnd(.refused, .limit(limit)))
    }

    // MARK: - Accepting and classifying

    /// The connection was accepted: route it, or read what classifies it first.
    public mutating func start(now: MonotonicInstant) -> ConnectionAction<Target> {
        guard phase == .classifying, end == nil else { return .none }
        if awaitsProxyHeader {
            deadline = now + settings.handshakeTimeout
            return .readPreamble
        }
        switch settings.classification {
        case .fixed:
            phase = .routing
            return .route(trafficClass)
        case .clientHello:
            deadline = now + settings.handshakeTimeout
            return .readPreamble
        case .external:
            return .none
        }
    }

    /// Everything the client sent so far (not only the latest read), while classifying: the
    /// PROXY header a trusted source sends first, then the ClientHello of a `by-sni` listener.
    public mutating func clientPreamble(
        _ bytes: some Collection<UInt8>, endOfInput: Bool, now: MonotonicInstant
    ) -> ConnectionAction<Target> {
        guard phase == .classifying else { return .none }
        lastActivity = now
        // Gone without a byte (a TCP check, a port scan): nothing was cut short.
        if bytes.isEmpty, endOfInput { return close(.closed) }
        if awaitsProxyHeader {
            switch ProxyHeader.parse(bytes) {
            case .needMoreData:
                guard endOfInput else { return .readPreamble }
                return close(ConnectionEnd(.clientAborted, .clientClosedBeforeNode))
            case .invalid(let problem):
                return close(ConnectionEnd(.handshakeFailed, .handshake(.proxyProtocol(problem.description))))
            case .complete(let header, let length):
                awaitsProxyHeader = false
                proxyHeaderLength = length
                proxiedClient = header.source
                proxiedDestination = header.destination
                deadline = nil
            }
        }
        let rest = bytes.dropFirst(proxyHeaderLength)
        if screensForProxyHeader, ProxyHeader.startsWithSignature(rest) == true {
            return refuseUntrustedHeader()
        }
        switch settings.classification {
        case .fixed:
            // Only the PROXY header was read: what follows is the client's own, for the node.
            return classifiedAs(
                trafficClass, detail: nil, peekedBytes: rest.count, endOfInput: endOfInput)
        case .external:
            // The classifier in front (TLS, HTTP) takes it from here.
            return .none
        case .clientHello(let rules):
            return clientHello(rest, rules: rules, endOfInput: endOfInput, now: now)
        }
    }

    /// The connection's first bytes, for a source that may not send a PROXY header: whether they
    /// begin like one (then the connection is refused before anything reaches a node).
    public mutating func firstBytes(startWithProxySignature: Bool) -> ConnectionAction<Target> {
        guard screensForProxyHeader, phase != .ended else { return .none }
        screensForProxyHeader = false
        return startWithProxySignature ? refuseUntrustedHeader() : .none
    }

    private mutating func refuseUntrustedHeader() -> ConnectionAction<Target> {
        close(
            ConnectionEnd(
                .handshakeFailed,
                .handshake(.proxyProtocol("a PROXY header from a source not listed in proxy_protocol.from"))))
    }

    private mutating func clientHello(
        _ bytes: some Collection<UInt8>, rules: SNIRules, endOfInput: Bool, now: MonotonicInstant
    ) -> ConnectionAction<Target> {
        if deadline == nil { deadline = now + settings.handshakeTimeout }
        switch ClientHello.parse(bytes) {
        case .needMoreData:
            guard endOfInput else { return .readPreamble }
            return close(ConnectionEnd(.clientAborted, .clientClosedBeforeNode))
        case .invalid(let problem):
            return close(ConnectionEnd(.handshakeFailed, .handshake(problem.handshakeFailure)))
        case .complete(let serverName):
            return classifiedAs(
                rules.classify(serverName), detail: "sni=\(serverName ?? "-")", peekedBytes: bytes.count,
                endOfInput: endOfInput)
        }
    }

    private mutating func classifiedAs(
        _ trafficClass: TrafficClass, detail: String?, peekedBytes: Int, endOfInput: Bool
    ) -> ConnectionAction<Target> {
        self.trafficClass = trafficClass
        if let detail { classified = detail }
        bytesFromClient += peekedBytes
        replayed = peekedBytes
        if endOfInput { clientInputEnded = true }
        deadline = nil
        phase = .routing
        return .route(trafficClass)
    }

    // MARK: - Routing and connecting

    /// Routing's answer: try these targets in order.
    public mutating func routed(_ targets: [Target], now: MonotonicInstant) -> ConnectionAction<Target> {
        guard phase == .routing else { return .none }
        queueDeadline = nil
        self.targets = targets
        nextTarget = 0
        return dialNext(now: now)
    }

    /// Every eligible node is at its `max_connections`: wait (each tick routes again) until the
    /// queue timeout, then refuse.
    public mutating func queued(now: MonotonicInstant) -> ConnectionAction<Target> {
        guard phase == .routing else { return .none }
        let until = queueDeadline ?? now + settings.queueTimeout
        guard now < until else {
            return refuse(ConnectionEnd(.refused, .limit(.queueTimeout(trafficClass, settings.queueTimeout))))
        }
        queueDeadline = until
        phase = .queued
        return .none
    }

    /// Routing found no node that may take the connection.
    public mutating func refused(_ refusal: Refusal) -> ConnectionAction<Target> {
        guard phase == .routing else { return .none }
        return refuse(ConnectionEnd(.refused, .noEligibleNode(refusal)))
    }

    /// Opening the node socket failed for want of descriptors or memory: no node is to blame, and
    /// no other node would fare better.
    public mutating func outOfResources(_ failure: SocketFailure) -> ConnectionAction<Target> {
        guard phase == .connecting else { return .none }
        return close(ConnectionEnd(.error, .balancerOutOfResources(failure)))
    }

    /// The node being dialled accepted the connection.
    public mutating func connected(now: MonotonicInstant) -> ConnectionAction<Target> {
        guard phase == .connecting, let current else { return .none }
        phase = .relaying
        deadline = nil
        node = current.node
        connectedAt = now
        bytesToCurrentNode = replayed ?? 0
        lastActivity = now
        nodeOutputClosed = clientInputEnded
        return .startRelay(replay: (replayed ?? 0) > 0, halfCloseNode: clientInputEnded)
    }

    /// The connect to the node being dialled failed: the next node is tried.
    public mutating func connectFailed(_ kind: NodeFailureKind, now: MonotonicInstant) -> ConnectionAction<Target> {
        guard phase == .connecting, let current else { return .none }
        let failure = NodeFailure(node: current.node, kind: kind)
        failures.append(failure)
        blamed.append(failure)
        return dialNext(now: now)
    }

    private mutating func dialNext(now: MonotonicInstant) -> ConnectionAction<Target> {
        guard nextTarget < targets.count else {
            current = nil
            return refuse(ConnectionEnd(.unavailable, .everyNodeFailed(trafficClass, failures)))
        }
        let target = targets[nextTarget]
        nextTarget += 1
        current = target
        bytesFromCurrentNode = 0
        nodeInputEnded = false
        nodeOutputClosed = false
        clientOutputClosed = false
        phase = .connecting
        deadline = now + settings.connectTimeout
        return .dial(target)
    }

    /// The node closed or failed before its first byte, and another may take the client over.
    private var mayRedispatch: Bool {
        bytesFromCurrentNode == 0 && replayed != nil && nextTarget < targets.count && !clientFailed
            && !nodeGotOnlyAnEOF
    }

    /// The client closed without sending a byte, and its EOF was passed to the node: the node's
    /// close answers the client's. It is no sign of a failed node (a port scan, a front
    /// balancer's TCP check, a client giving up), and another node would only get the same EOF.
    private var nodeGotOnlyAnEOF: Bool { clientInputEnded && nodeOutputClosed && bytesToCurrentNode == 0 }

    /// The current node closed without a byte and nobody else can take over: it still let the
    /// connection down if it was sent something, or closed at once.
    private mutating func noteSilentClose(now: MonotonicInstant) {
        guard bytesFromCurrentNode == 0, !nodeGotOnlyAnEOF else { return }
        recordSilentClose(now: now, handingOn: false)
    }

    private mutating func redispatch(now: MonotonicInstant) -> ConnectionAction<Target> {
        recordSilentClose(now: now, handingOn: true)
        retries += 1
        return dialNext(now: now)
    }

    /// The current node closed without a byte. Closing at once on a client that sent nothing is
    /// the node's own doing; closing on what the client sent is held against it once another
    /// node answers the same bytes; closing on a client silent for a second or more (a node's idle
    /// limit, say) is neither, and is on record only when the client is handed on because of it.
    private mutating func recordSilentClose(now: MonotonicInstant, handingOn: Bool) {
        guard let current else { return }
        let failure = NodeFailure(node: current.node, kind: .closedWithoutAnswer)
        let atOnce = connectedAt.map { now - $0 < .seconds(1) } ?? true
        if bytesToCurrentNode > 0 {
            blamedIfAnotherAnswers.append(failure)
        } else if atOnce {
            blamed.append(failure)
        } else if !handingOn {
            return
        }
        failures.append(failure)
    }

    // MARK: - Relaying

    /// `count` bytes were read from `side`.
    public mutating func read(from side: ConnectionSide, count: Int, now: MonotonicInstant) -> ReadVerdict {
        lastActivity = now
        switch side {
        case .client:
            bytesFromClient += count
            if phase == .relaying { bytesToCurrentNode += count }
            guard let kept = replayed else { return .forward }
            guard kept + count <= settings.replayLimit else {
                replayed = nil
                // Before a node is connected the bytes have nowhere to go but the replay.
                guard phase == .relaying else {
                    let over = ConnectionEnd(.error, .replayLimitExceeded(settings.replayLimit))
                    _ = close(over)
                    return .close(end ?? over)
                }
                return .dropReplay
            }
            replayed = kept + count
            return .keepForReplay
        case .node:
            bytesFromNode += count
            bytesFromCurrentNode += count
            if bytesFromCurrentNode == count, !blamedIfAnotherAnswers.isEmpty {
                // The nodes that closed on the same bytes were at fault after all.
                blamed += blamedIfAnotherAnswers
                blamedIfAnotherAnswers = []
            }
            // The node answered: it will not be replaced, so the replay is no longer needed.
            guard bytesFromCurrentNode == count, replayed != nil else { return .forward }
            replayed = nil
            return .dropReplay
        }
    }

    /// `side` sent its EOF (a half-close).
    public mutating func inputEnded(_ side: ConnectionSide, now: MonotonicInstant) -> ConnectionAction<Target> {
        switch side {
        case .client:
            guard !clientInputEnded else { return .none }
            clientInputEnded = true
            // Before a node is connected the EOF waits, and is passed on after the replay.
            guard phase == .relaying, !nodeOutputClosed else { return .none }
            nodeOutputClosed = true
            return nodeInputEnded ? finish(now: now) : .halfClose(.node)
        case .node:
            guard phase == .relaying, !nodeInputEnded else { return .none }
            if mayRedispatch { return redispatch(now: now) }
            noteSilentClose(now: now)
            nodeInputEnded = true
            clientOutputClosed = true
            return clientInputEnded ? finish(now: now) : .halfClose(.client)
        }
    }

    /// A socket failed (reset, refused write, hang-up); `queuedForFailed` and `queuedForSurvivor`
    /// say whether bytes still wait to be written to the failed side and to the other one.
    public mutating func failed(
        _ side: ConnectionSide,
        _ failure: SocketFailure,
        queuedForFailed: Bool,
        queuedForSurvivor: Bool,
        now: MonotonicInstant
    ) -> ConnectionAction<Target> {
        if side == .client { clientFailed = true }
        switch phase {
        case .classifying, .routing, .queued:
            return close(ConnectionEnd(.clientAborted, .clientClosedBeforeNode))
        case .connecting:
            guard side == .client else { return connectFailed(.socket(failure), now: now) }
            return close(ConnectionEnd(.clientAborted, .clientClosedBeforeNode))
        case .relaying, .finishing:
            if side == .node, mayRedispatch { return redispatch(now: now) }
            if side == .node, phase == .relaying { noteSilentClose(now: now) }
            // The failed side's partner had finished sending and everything reached it: a client
            // that resets instead of closing after its answer lost nothing.
            let partnerDone = side == .client ? nodeInputEnded : clientInputEnded
            let outcome =
                partnerDone && !queuedForFailed
                ? ConnectionEnd.closed : ConnectionEnd(.error, .socketFailed(side, failure))
            record(outcome)
            guard queuedForSurvivor else { return close(outcome) }
            phase = .lingering
            deadline = now + settings.lingerLimit
            return .linger(survivor: side.other)
        case .lingering:
            return close(end ?? ConnectionEnd(.error, .socketFailed(side, failure)))
        case .ended:
            return .none
        }
    }

    /// What `finishWhenFlushed` or `linger` waited for has been written.
    public mutating func pendingWritten(now: MonotonicInstant) -> ConnectionAction<Target> {
        guard phase == .finishing || phase == .lingering else { return .none }
        return close(end ?? .closed)
    }

    private mutating func finish(now: MonotonicInstant) -> ConnectionAction<Target> {
        record(.closed)
        phase = .finishing
        deadline = now + settings.lingerLimit
        return .finishWhenFlushed
    }

    // MARK: - Time and the balancer

    /// Time passed: the handshake, connect, idle and linger limits.
    public mutating func tick(now: MonotonicInstant) -> ConnectionAction<Target> {
        switch phase {
        case .classifying:
            guard let deadline, now >= deadline else { return .none }
            return close(
                ConnectionEnd(
                    .handshakeFailed,
                    .handshake(
                        .timeout(
                            what: awaitsProxyHeader ? "PROXY protocol header" : "ClientHello",
                            limit: settings.handshakeTimeout))))
        case .connecting:
            guard let deadline, now >= deadline else { return .none }
            return connectFailed(.timedOut, now: now)
        case .relaying:
            guard now - lastActivity >= settings.idleTimeout else { return .none }
            return close(.idleTimeout)
        case .finishing, .lingering:
            guard let deadline, now >= deadline else { return .none }
            return close(end ?? .closed)
        case .queued:
            guard let queueDeadline, now < queueDeadline else {
                return refuse(ConnectionEnd(.refused, .limit(.queueTimeout(trafficClass, settings.queueTimeout))))
            }
            phase = .routing
            return .route(trafficClass)
        case .routing, .ended:
            return .none
        }
    }

    /// The balancer closes the connection for good: `.shutdown` (shutdown, a removed listener)
    /// or `.drained` (its node is emptied for a reconnect).
    public mutating func shutDown(_ why: ConnectionEnd = .shutdown) -> ConnectionAction<Target> {
        guard phase != .ended else { return .none }
        return close(why)
    }

    /// The executor could not set the connection up.
    public mutating func setupFailed(_ detail: String) -> ConnectionAction<Target> {
        guard phase != .ended else { return .none }
        return close(ConnectionEnd(.error, .setupFailed(detail)))
    }

    // MARK: - Ending

    private mutating func record(_ outcome: ConnectionEnd) {
        if end == nil { end = outcome }
    }

    private mutating func close(_ outcome: ConnectionEnd) -> ConnectionAction<Target> {
        record(outcome)
        phase = .ended
        deadline = nil
        replayed = nil
        return .close(end!)
    }

    private mutating func refuse(_ outcome: ConnectionEnd) -> ConnectionAction<Target> {
        close(outcome)
    }
}

extension ClientHello.Problem {
    /// The handshake failure this problem is counted as.
    public var handshakeFailure: HandshakeFailure {
        switch self {
        case .notTLS: .notTLS(description)
        case .oversized: .oversized(description)
        case .malformed: .malformed(description)
        }
    }
}
