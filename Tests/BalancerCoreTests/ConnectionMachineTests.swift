import BalancerCore
import Testing

/// A node target as tests name it.
struct TestTarget: RelayTarget, Hashable, CustomStringConvertible {
    var node: NodeID
    var description: String { node }
}

/// One event fed to the machine, and what the test expects back.
enum Step: CustomStringConvertible {
    case start(ConnectionAction<TestTarget>)
    case preamble([UInt8], endOfInput: Bool = false, ConnectionAction<TestTarget>)
    case routed([NodeID], ConnectionAction<TestTarget>)
    case refused(Refusal, ConnectionAction<TestTarget>)
    case connected(ConnectionAction<TestTarget>)
    case connectFailed(NodeFailureKind, ConnectionAction<TestTarget>)
    case read(ConnectionSide, Int, ReadVerdict)
    case inputEnded(ConnectionSide, ConnectionAction<TestTarget>)
    case failed(
        ConnectionSide, SocketFailure, queuedForFailed: Bool = false, queuedForSurvivor: Bool = false,
        ConnectionAction<TestTarget>)
    case written(ConnectionAction<TestTarget>)
    /// Moves the test's clock by this much, then ticks.
    case tick(Duration, ConnectionAction<TestTarget>)
    case shutDown(ConnectionAction<TestTarget>)
    /// Routing answered that every eligible node is at its limit.
    case queued(ConnectionAction<TestTarget>)
    case limitReached(ConnectionLimit, ConnectionAction<TestTarget>)
    case firstBytes(proxySignature: Bool, ConnectionAction<TestTarget>)

    var description: String {
        switch self {
        case .start: "start"
        case .preamble(let bytes, let end, _): "preamble(\(bytes.count) bytes, eof: \(end))"
        case .routed(let nodes, _): "routed(\(nodes))"
        case .refused: "refused"
        case .connected: "connected"
        case .connectFailed(let kind, _): "connectFailed(\(kind))"
        case .read(let side, let count, _): "read(\(side), \(count))"
        case .inputEnded(let side, _): "inputEnded(\(side))"
        case .failed(let side, let failure, _, _, _): "failed(\(side), \(failure))"
        case .written: "written"
        case .tick(let duration, _): "tick(+\(duration))"
        case .shutDown: "shutDown"
        case .queued: "queued"
        case .limitReached(let limit, _): "limitReached(\(limit.label))"
        case .firstBytes(let signature, _): "firstBytes(proxySignature: \(signature))"
        }
    }
}

/// One behaviour users rely on, as the events of one connection and the machine's answers.
struct Behaviour: CustomTestStringConvertible, Sendable {
    var name: String
    var settings: ConnectionSettings
    /// The peer's address, for listeners that take PROXY headers from some sources.
    var peer: [UInt8]? = nil
    var steps: [Step]
    /// What the access log says at the end.
    var end: ConnectionEnd? = nil
    var retries = 0
    /// Every node that let the connection down (the access log), when the row says.
    var failures: [NodeFailure]? = nil
    /// What passive health holds against the nodes, when the row says.
    var blamed: [NodeFailure]? = nil

    var testDescription: String { name }
}

extension Step: @unchecked Sendable {}

private let device = ConnectionSettings(
    classification: .fixed(.device), connectTimeout: .seconds(3), idleTimeout: .seconds(60),
    handshakeTimeout: .seconds(5))
private let sni = ConnectionSettings(
    classification: .clientHello(SNIRules(patterns: [.console: ["console.example.com"]], defaultClass: .console)),
    connectTimeout: .seconds(3), idleTimeout: .seconds(60), handshakeTimeout: .seconds(5))
private let ums1 = TestTarget(node: "ums1")
private let ums2 = TestTarget(node: "ums2")
private let ums3 = TestTarget(node: "ums3")
private let hello = ClientHelloBuilder.hello(serverName: "console.example.com")
private let allDown = Refusal(trafficClass: .device, reasons: [("ums1", .down), ("ums2", .down)])
private let reset = SocketFailure.connectionReset

private let frontBalancer: [UInt8] = [10, 0, 0, 2]
private let someoneElse: [UInt8] = [192, 0, 2, 99]
private let behindProxy: ConnectionSettings = {
    var settings = device
    settings.proxyProtocolFrom = [AddressRange("10.0.0.0/24")!]
    return settings
}()
private let sniBehindProxy: ConnectionSettings = {
    var settings = sni
    settings.proxyProtocolFrom = [AddressRange("10.0.0.0/24")!]
    return settings
}()
private let proxyLine = Array("PROXY TCP4 192.0.2.7 10.0.0.5 51234 30001\r\n".utf8)
private let untrusted = ConnectionEnd(
    .handshakeFailed, .handshake(.proxyProtocol("a PROXY header from a source not listed in proxy_protocol.from")))

private let queueTimedOut = ConnectionEnd(.refused, .limit(.queueTimeout(.device, .seconds(5))))

private let behaviours: [Behaviour] = [
    Behaviour(
        name: "a trusted front balancer's PROXY header is read first; the node gets only what follows",
        settings: behindProxy, peer: frontBalancer,
        steps: [
            .start(.readPreamble), .preamble(Array(proxyLine.prefix(10)), .readPreamble),
            .preamble(proxyLine + Array("hello".utf8), .route(.device)), .routed(["ums1"], .dial(ums1)),
            .connected(.startRelay(replay: true, halfCloseNode: false)),
        ]),
    Behaviour(
        name: "behind a front balancer, by-sni reads the PROXY header, then the ClientHello",
        settings: sniBehindProxy, peer: frontBalancer,
        steps: [
            .start(.readPreamble), .preamble(proxyLine, .readPreamble), .preamble(proxyLine + hello, .route(.console)),
        ]),
    Behaviour(
        name: "a trusted source that sends no PROXY header is closed as a handshake failure",
        settings: behindProxy, peer: frontBalancer,
        steps: [
            .start(.readPreamble),
            .preamble(
                Array("GET / HTTP/1.1\r\n".utf8),
                .close(ConnectionEnd(.handshakeFailed, .handshake(.proxyProtocol("no PROXY protocol header"))))),
        ]),
    Behaviour(
        name: "a PROXY header that never completes fails at the handshake timeout",
        settings: behindProxy, peer: frontBalancer,
        steps: [
            .start(.readPreamble), .preamble(Array(proxyLine.prefix(10)), .readPreamble),
            .tick(
                .seconds(5),
                .close(
                    ConnectionEnd(
                        .handshakeFailed, .handshake(.timeout(what: "PROXY protocol header", limit: .seconds(5)))))),
        ]),
    Behaviour(
        name: "any other source is routed at once, but refused if it begins with a PROXY header",
        settings: behindProxy, peer: someoneElse,
        steps: [
            .start(.route(.device)), .routed(["ums1"], .dial(ums1)),
            .firstBytes(proxySignature: true, .close(untrusted)),
        ],
        end: untrusted),
    Behaviour(
        name: "any other source's ordinary bytes pass",
        settings: behindProxy, peer: someoneElse,
        steps: [
            .start(.route(.device)), .routed(["ums1"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .firstBytes(proxySignature: false, .none),
            .firstBytes(proxySignature: true, .none),
        ]),
    Behaviour(
        name: "a connection that already ended asks for nothing more, whatever its first bytes turn out to be",
        settings: behindProxy, peer: someoneElse,
        steps: [
            .start(.route(.device)), .routed(["ums1"], .dial(ums1)), .shutDown(.close(.shutdown)),
            .firstBytes(proxySignature: true, .none),
        ],
        end: .shutdown),
    Behaviour(
        name: "on by-sni, a PROXY header from any other source is refused as such",
        settings: sniBehindProxy, peer: someoneElse,
        steps: [.start(.readPreamble), .preamble(proxyLine, .close(untrusted))]),
    Behaviour(
        name: "when every eligible node is at its limit the connection waits, routed again on each tick",
        settings: device,
        steps: [
            .start(.route(.device)), .queued(.none), .tick(.seconds(2), .route(.device)), .queued(.none),
            .tick(.seconds(1), .route(.device)), .routed(["ums1"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)),
        ]),
    Behaviour(
        name: "a connection that waited the queue timeout for a slot is refused with its reason",
        settings: device,
        steps: [
            .start(.route(.device)), .queued(.none), .tick(.seconds(4), .route(.device)), .queued(.none),
            .tick(.seconds(1), .close(queueTimedOut)),
        ],
        end: queueTimedOut),
    Behaviour(
        name: "a listener over its limit refuses at once",
        settings: device,
        steps: [
            .limitReached(.listener(10), .close(ConnectionEnd(.refused, .limit(.listener(10))))),
            .start(.none),
        ]),
    Behaviour(
        name: "the only node closing without a byte after a request let the connection down",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .read(.client, 10, .keepForReplay),
            .tick(.seconds(5), .none), .inputEnded(.node, .halfClose(.client)),
        ],
        failures: [NodeFailure(node: "ums1", kind: .closedWithoutAnswer)],
        // With no other node to answer the same bytes, they may be the client's fault.
        blamed: []),
    Behaviour(
        name: "bytes every node closes on blame no node: a client cannot take healthy nodes out of rotation",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1", "ums2"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .read(.client, 7, .keepForReplay),
            .inputEnded(.node, .dial(ums2)), .connected(.startRelay(replay: true, halfCloseNode: false)),
            .inputEnded(.node, .halfClose(.client)),
        ],
        retries: 1,
        failures: [
            NodeFailure(node: "ums1", kind: .closedWithoutAnswer),
            NodeFailure(node: "ums2", kind: .closedWithoutAnswer),
        ],
        blamed: []),
    Behaviour(
        name: "a node that closed on bytes another node then answered is held to account",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1", "ums2", "ums3"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .read(.client, 7, .keepForReplay),
            .failed(.node, reset, .dial(ums2)), .connected(.startRelay(replay: true, halfCloseNode: false)),
            .inputEnded(.node, .dial(ums3)), .connected(.startRelay(replay: true, halfCloseNode: false)),
            .read(.node, 40, .dropReplay),
        ],
        retries: 2,
        blamed: [
            NodeFailure(node: "ums1", kind: .closedWithoutAnswer),
            NodeFailure(node: "ums2", kind: .closedWithoutAnswer),
        ]),
    Behaviour(
        name: "a node closing at once before the client sent a byte is held to account at once",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1", "ums2"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .inputEnded(.node, .dial(ums2)),
        ],
        retries: 1, blamed: [NodeFailure(node: "ums1", kind: .closedWithoutAnswer)]),
    Behaviour(
        name: "a node closing on a client silent for long is not held against it, though the client is handed on",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1", "ums2"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .tick(.seconds(30), .none),
            .inputEnded(.node, .dial(ums2)), .connected(.startRelay(replay: false, halfCloseNode: false)),
            .read(.node, 40, .dropReplay),
        ],
        retries: 1, failures: [NodeFailure(node: "ums1", kind: .closedWithoutAnswer)], blamed: []),
    Behaviour(
        name: "a refused connect is held against its node at once",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1", "ums2"], .dial(ums1)), .connectFailed(.refused, .dial(ums2)),
        ],
        blamed: [NodeFailure(node: "ums1", kind: .refused)]),
    Behaviour(
        name: "a node closing a silent client's connection long after connect is not held against it",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .tick(.seconds(30), .none),
            .inputEnded(.node, .halfClose(.client)),
        ],
        failures: []),
    Behaviour(
        name: "a client that connects and closes (a port scan, a TCP check) costs the node nothing, goes nowhere else",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1", "ums2"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .inputEnded(.client, .halfClose(.node)),
            .inputEnded(.node, .finishWhenFlushed), .written(.close(.closed)),
        ],
        end: .closed, failures: []),
    Behaviour(
        name: "a client gone before its node connected: the node's close answers the EOF it was passed",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1", "ums2"], .dial(ums1)), .inputEnded(.client, .none),
            .connected(.startRelay(replay: false, halfCloseNode: true)), .inputEnded(.node, .finishWhenFlushed),
            .written(.close(.closed)),
        ],
        end: .closed, failures: []),
    Behaviour(
        name: "a front balancer's check that sends its PROXY header and closes costs the node nothing",
        settings: behindProxy, peer: frontBalancer,
        steps: [
            .start(.readPreamble), .preamble(proxyLine, endOfInput: true, .route(.device)),
            .routed(["ums1", "ums2"], .dial(ums1)), .connected(.startRelay(replay: false, halfCloseNode: true)),
            .inputEnded(.node, .finishWhenFlushed), .written(.close(.closed)),
        ],
        end: .closed, failures: []),
    Behaviour(
        name: "a node that resets a connection whose client closed without a byte is not replaced or blamed",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1", "ums2"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .inputEnded(.client, .halfClose(.node)),
            .failed(.node, reset, .close(.closed)),
        ],
        end: .closed, failures: []),
    Behaviour(
        name: "a fixed-class connection is routed at once and relayed once its first node connects",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1", "ums2"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)),
        ]),
    Behaviour(
        name: "a refused connect is retried on the next node before the client notices",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1", "ums2"], .dial(ums1)), .connectFailed(.refused, .dial(ums2)),
            .connected(.startRelay(replay: false, halfCloseNode: false)),
        ]),
    Behaviour(
        name: "a connect that takes longer than the connect timeout moves on to the next node",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1", "ums2"], .dial(ums1)), .tick(.seconds(2), .none),
            .tick(.seconds(1), .dial(ums2)),
        ]),
    Behaviour(
        name: "when every node fails the connection is unavailable, with each node's reason",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1", "ums2"], .dial(ums1)), .connectFailed(.refused, .dial(ums2)),
            .connectFailed(
                .timedOut,
                .close(
                    ConnectionEnd(
                        .unavailable,
                        .everyNodeFailed(
                            .device,
                            [NodeFailure(node: "ums1", kind: .refused), NodeFailure(node: "ums2", kind: .timedOut)])))),
        ],
        end: ConnectionEnd(
            .unavailable,
            .everyNodeFailed(
                .device, [NodeFailure(node: "ums1", kind: .refused), NodeFailure(node: "ums2", kind: .timedOut)]))),
    Behaviour(
        name: "no eligible node: refused and closed at once",
        settings: device,
        steps: [.start(.route(.device)), .refused(allDown, .close(ConnectionEnd(.refused, .noEligibleNode(allDown))))],
        end: ConnectionEnd(.refused, .noEligibleNode(allDown))),
    Behaviour(
        name: "a by-sni connection waits for its whole ClientHello and replays it to the node",
        settings: sni,
        steps: [
            .start(.readPreamble), .preamble(Array(hello.prefix(20)), .readPreamble),
            .preamble(hello, .route(.console)), .routed(["ums1"], .dial(ums1)),
            .connected(.startRelay(replay: true, halfCloseNode: false)),
        ]),
    Behaviour(
        name: "plain HTTP on a by-sni listener is a handshake failure counted as not-tls",
        settings: sni,
        steps: [
            .start(.readPreamble),
            .preamble(
                Array("GET / HTTP/1.1\r\n\r\n".utf8),
                .close(ConnectionEnd(.handshakeFailed, .handshake(.notTLS("not a TLS handshake"))))),
        ]),
    Behaviour(
        name: "a ClientHello that does not complete within the handshake timeout fails the handshake",
        settings: sni,
        steps: [
            .start(.readPreamble), .preamble(Array(hello.prefix(20)), .readPreamble), .tick(.seconds(4), .none),
            .tick(
                .seconds(1),
                .close(
                    ConnectionEnd(
                        .handshakeFailed, .handshake(.timeout(what: "ClientHello", limit: .seconds(5)))))),
        ]),
    Behaviour(
        name: "a client that closes before sending a byte closed normally, on by-sni as elsewhere",
        settings: sni,
        steps: [.start(.readPreamble), .preamble([], endOfInput: true, .close(.closed))],
        end: .closed),
    Behaviour(
        name: "so does a front balancer's check without its PROXY header",
        settings: behindProxy, peer: frontBalancer,
        steps: [.start(.readPreamble), .preamble([], endOfInput: true, .close(.closed))],
        end: .closed),
    Behaviour(
        name: "a client that closes before its ClientHello is complete aborted",
        settings: sni,
        steps: [
            .start(.readPreamble),
            .preamble(
                Array(hello.prefix(20)), endOfInput: true,
                .close(ConnectionEnd(.clientAborted, .clientClosedBeforeNode))),
        ]),
    Behaviour(
        name: "a node that closes without answering is replaced, and the next gets what the client sent",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1", "ums2"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .read(.client, 120, .keepForReplay),
            .inputEnded(.node, .dial(ums2)), .connected(.startRelay(replay: true, halfCloseNode: false)),
            .read(.node, 10, .dropReplay), .read(.client, 5, .forward),
        ],
        retries: 1),
    Behaviour(
        name: "a node that resets without answering is replaced too",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1", "ums2"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .read(.client, 120, .keepForReplay),
            .failed(.node, reset, .dial(ums2)), .connected(.startRelay(replay: true, halfCloseNode: false)),
        ],
        retries: 1),
    Behaviour(
        name: "a client that already sent its EOF gets it passed to the replacement node after the replay",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1", "ums2"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .read(.client, 120, .keepForReplay),
            .inputEnded(.client, .halfClose(.node)), .inputEnded(.node, .dial(ums2)),
            .connected(.startRelay(replay: true, halfCloseNode: true)),
        ],
        retries: 1),
    Behaviour(
        name: "once the node has answered it is never replaced: its EOF half-closes the client",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1", "ums2"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .read(.client, 120, .keepForReplay),
            .read(.node, 300, .dropReplay), .inputEnded(.node, .halfClose(.client)),
        ]),
    Behaviour(
        name: "a client that sent more than the replay limit is not replayed elsewhere",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1", "ums2"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .read(.client, 60_000, .keepForReplay),
            .read(.client, 6_000, .dropReplay), .inputEnded(.node, .halfClose(.client)),
        ]),
    Behaviour(
        name: "the last node closing without an answer half-closes the client: nobody else can take it",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .read(.client, 10, .keepForReplay),
            .inputEnded(.node, .halfClose(.client)),
        ]),
    Behaviour(
        name: "an EOF becomes the other side's half-close; both done, the connection closes once flushed",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .read(.client, 10, .keepForReplay),
            .inputEnded(.client, .halfClose(.node)), .read(.node, 10, .dropReplay),
            .inputEnded(.node, .finishWhenFlushed), .written(.close(.closed)),
        ],
        end: .closed),
    Behaviour(
        name: "a client EOF that arrives before the node is connected is passed on after the replay",
        settings: sni,
        steps: [
            .start(.readPreamble), .preamble(hello, endOfInput: true, .route(.console)),
            .routed(["ums1"], .dial(ums1)), .connected(.startRelay(replay: true, halfCloseNode: true)),
            .inputEnded(.client, .none),
        ]),
    Behaviour(
        name: "a client that resets after the node finished and everything reached it closed normally",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .read(.node, 50, .dropReplay),
            .inputEnded(.node, .halfClose(.client)), .failed(.client, reset, .close(.closed)),
        ],
        end: .closed),
    Behaviour(
        name: "a reset in mid-exchange is an error",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .read(.node, 50, .dropReplay),
            .failed(.client, reset, .close(ConnectionEnd(.error, .socketFailed(.client, reset)))),
        ],
        end: ConnectionEnd(.error, .socketFailed(.client, reset))),
    Behaviour(
        name: "a reset while bytes for the failed side were still queued is an error, not a normal close",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .read(.node, 50, .dropReplay),
            .inputEnded(.node, .halfClose(.client)),
            .failed(
                .client, reset, queuedForFailed: true, .close(ConnectionEnd(.error, .socketFailed(.client, reset)))),
        ]),
    Behaviour(
        name: "the survivor of a failure gets what was queued for it, then the connection closes",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .read(.node, 50, .dropReplay),
            .failed(.node, reset, queuedForSurvivor: true, .linger(survivor: .client)),
            .written(.close(ConnectionEnd(.error, .socketFailed(.node, reset)))),
        ],
        end: ConnectionEnd(.error, .socketFailed(.node, reset))),
    Behaviour(
        name: "a survivor that never takes its bytes is closed at the linger limit",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .read(.node, 50, .dropReplay),
            .failed(.node, reset, queuedForSurvivor: true, .linger(survivor: .client)),
            .tick(.seconds(59), .none), .tick(.seconds(1), .close(ConnectionEnd(.error, .socketFailed(.node, reset)))),
        ]),
    Behaviour(
        name: "a peer that never reads the last bytes is closed at the linger limit",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .inputEnded(.client, .halfClose(.node)),
            .inputEnded(.node, .finishWhenFlushed), .tick(.seconds(59), .none), .tick(.seconds(1), .close(.closed)),
        ]),
    Behaviour(
        name: "no byte either way for the idle timeout closes both sides; any byte restarts it",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .tick(.seconds(59), .none),
            .read(.node, 1, .dropReplay), .tick(.seconds(59), .none), .tick(.seconds(1), .close(.idleTimeout)),
        ],
        end: .idleTimeout),
    Behaviour(
        name: "a client gone before its node is connected aborted",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1"], .dial(ums1)),
            .failed(.client, reset, .close(ConnectionEnd(.clientAborted, .clientClosedBeforeNode))),
            .connected(.none),
        ]),
    Behaviour(
        name: "a client that sends more than a replay can hold before its node is connected is closed",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1"], .dial(ums1)), .read(.client, 1_000, .keepForReplay),
            .read(.client, 64 * 1024, .close(ConnectionEnd(.error, .replayLimitExceeded(64 * 1024)))),
        ]),
    Behaviour(
        name: "shutdown closes a connection for good; nothing it hears afterwards changes how it ended",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .shutDown(.close(.shutdown)),
            .inputEnded(.node, .none), .failed(.client, reset, .none), .tick(.seconds(3600), .none),
            .shutDown(.none),
        ],
        end: .shutdown),
    Behaviour(
        name: "the first reason wins: a reset while the last bytes leave keeps the normal close",
        settings: device,
        steps: [
            .start(.route(.device)), .routed(["ums1"], .dial(ums1)),
            .connected(.startRelay(replay: false, halfCloseNode: false)), .inputEnded(.client, .halfClose(.node)),
            .inputEnded(.node, .finishWhenFlushed),
            .failed(.node, reset, queuedForSurvivor: true, .linger(survivor: .client)), .written(.close(.closed)),
        ],
        end: .closed),
]

@Suite struct ConnectionMachineTests {
    @Test(arguments: behaviours)
    func behaviour(_ behaviour: Behaviour) {
        var now = MonotonicInstant(nanoseconds: 1_000_000_000)
        var machine = ConnectionMachine<TestTarget>(settings: behaviour.settings, now: now, peer: behaviour.peer)
        for (index, step) in behaviour.steps.enumerated() {
            let context = Comment(rawValue: "step \(index + 1): \(step)")
            switch step {
            case .start(let expected):
                #expect(machine.start(now: now) == expected, context)
            case .preamble(let bytes, let endOfInput, let expected):
                #expect(machine.clientPreamble(bytes, endOfInput: endOfInput, now: now) == expected, context)
            case .routed(let nodes, let expected):
                #expect(machine.routed(nodes.map(TestTarget.init), now: now) == expected, context)
            case .refused(let refusal, let expected):
                #expect(machine.refused(refusal) == expected, context)
            case .connected(let expected):
                #expect(machine.connected(now: now) == expected, context)
            case .connectFailed(let kind, let expected):
                #expect(machine.connectFailed(kind, now: now) == expected, context)
            case .read(let side, let count, let expected):
                #expect(machine.read(from: side, count: count, now: now) == expected, context)
            case .inputEnded(let side, let expected):
                #expect(machine.inputEnded(side, now: now) == expected, context)
            case .failed(let side, let failure, let queuedForFailed, let queuedForSurvivor, let expected):
                let action = machine.failed(
                    side, failure, queuedForFailed: queuedForFailed, queuedForSurvivor: queuedForSurvivor, now: now)
                #expect(action == expected, context)
            case .written(let expected):
                #expect(machine.pendingWritten(now: now) == expected, context)
            case .tick(let duration, let expected):
                now = now + duration
                #expect(machine.tick(now: now) == expected, context)
            case .shutDown(let expected):
                #expect(machine.shutDown() == expected, context)
            case .queued(let expected):
                #expect(machine.queued(now: now) == expected, context)
            case .limitReached(let limit, let expected):
                #expect(machine.limitReached(limit) == expected, context)
            case .firstBytes(let signature, let expected):
                #expect(machine.firstBytes(startWithProxySignature: signature) == expected, context)
            }
        }
        if let end = behaviour.end { #expect(machine.end == end) }
        if let failures = behaviour.failures { #expect(machine.failures == failures) }
        if let blamed = behaviour.blamed { #expect(machine.blamed == blamed) }
        #expect(machine.retries == behaviour.retries)
    }

    @Test func theAccessLogKnowsTheNodeTheBytesAndHowTheClassWasDecided() {
        let now = MonotonicInstant(nanoseconds: 0)
        var machine = ConnectionMachine<TestTarget>(settings: sni, now: now)
        _ = machine.start(now: now)
        _ = machine.clientPreamble(hello, endOfInput: false, now: now)
        _ = machine.routed([ums1, ums2], now: now)
        _ = machine.connectFailed(.refused, now: now)
        _ = machine.connected(now: now)
        _ = machine.read(from: .client, count: 10, now: now)
        _ = machine.read(from: .node, count: 500, now: now)
        #expect(machine.node == "ums2")
        #expect(machine.classified == "sni=console.example.com")
        #expect(machine.trafficClass == .console)
        #expect(machine.bytesFromClient == hello.count + 10)
        #expect(machine.bytesFromNode == 500)
        #expect(machine.failures == [NodeFailure(node: "ums1", kind: .refused)])
    }

    @Test func bytesMayPassUnseenOnlyOnceNoReplayIsKeptAndNothingIsScreened() {
        let now = MonotonicInstant(nanoseconds: 0)
        var machine = ConnectionMachine<TestTarget>(settings: device, now: now)
        _ = machine.start(now: now)
        _ = machine.routed([ums1, ums2], now: now)
        #expect(!machine.forwardsOnly, "not relaying yet")
        _ = machine.connected(now: now)
        _ = machine.read(from: .client, count: 100, now: now)
        #expect(!machine.forwardsOnly, "the request is kept: a silent node is still replaced")
        _ = machine.read(from: .node, count: 10, now: now)
        #expect(machine.forwardsOnly)
        _ = machine.inputEnded(.client, now: now)
        _ = machine.inputEnded(.node, now: now)
        #expect(!machine.forwardsOnly, "finishing")

        var small = device
        small.replayLimit = 50
        var overflowing = ConnectionMachine<TestTarget>(settings: small, now: now)
        _ = overflowing.start(now: now)
        _ = overflowing.routed([ums1, ums2], now: now)
        _ = overflowing.connected(now: now)
        #expect(overflowing.read(from: .client, count: 60, now: now) == .dropReplay)
        #expect(overflowing.forwardsOnly, "past the replay limit nothing is kept")

        var screened = ConnectionMachine<TestTarget>(settings: behindProxy, now: now, peer: someoneElse)
        _ = screened.start(now: now)
        _ = screened.routed([ums1], now: now)
        _ = screened.connected(now: now)
        _ = screened.read(from: .node, count: 10, now: now)
        #expect(!screened.forwardsOnly, "the client's first bytes are still to be screened")
    }

    @Test func theProxiedClientIsKnownAndTheHeaderIsNotTheNodes() {
        let now = MonotonicInstant(nanoseconds: 0)
        var machine = ConnectionMachine<TestTarget>(settings: behindProxy, now: now, peer: frontBalancer)
        _ = machine.start(now: now)
        _ = machine.clientPreamble(proxyLine + [1, 2, 3], endOfInput: false, now: now)
        #expect(machine.proxiedClient == ProxyHeader.Address(ip: [192, 0, 2, 7], port: 51234))
        #expect(machine.proxiedDestination?.port == 30001)
        #expect(machine.proxyHeaderLength == proxyLine.count)
        #expect(machine.bytesFromClient == 3)
    }

    @Test func reasonsReadTheSameAsTheyAlwaysDid() {
        #expect(ClientHello.Problem.notTLS.description == "not a TLS handshake")
        #expect(ClientHello.Problem.oversized.description == "ClientHello larger than 16384 bytes")
        #expect(ConnectionEndReason.clientClosedBeforeNode.description == "client closed before a node was connected")
        #expect(ConnectionEndReason.noEligibleNode(allDown).description == "device refused: ums1 down, ums2 down")
        #expect(
            ConnectionEndReason.everyNodeFailed(
                .device, [NodeFailure(node: "ums1", kind: .refused), NodeFailure(node: "ums2", kind: .timedOut)]
            ).description == "device unavailable: every node failed: ums1 connection refused, ums2 connect timed out")
        #expect(HandshakeFailure.notTLS("not a TLS handshake").label == "not-tls")
        #expect(ConnectionEndReason.noEligibleNode(allDown).refusalLabel == "no-eligible-node")
    }
}
