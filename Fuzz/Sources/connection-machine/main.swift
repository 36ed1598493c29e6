import BalancerCore
import FuzzSupport

/// The connection machine (the policy of every relayed connection) fed events in any order: an
/// executor reports what its sockets do, and sockets do things in orders no table lists.
///
/// Input: one byte choosing the listener (fixed class or `by-sni`; PROXY headers required from the
/// peer, refused from it, or not configured; the default or a 100-byte replay limit), then one byte
/// per event: the low four bits pick it, the high four its argument. Promises checked:
/// - once it said `close`, every later event asks for nothing (`none`), and the end it closed with
///   is the one the access log reads;
/// - it dials only targets the last routing gave, none twice for one routing;
/// - a client byte read before a node is connected is kept for the replay or ends the connection,
///   never forwarded to nobody or dropped;
/// - what passive health holds against nodes (`blamed`) is among what the access log lists
///   (`failures`); when the client spoke before any node was connected and no node answered, no
///   node is blamed for closing without a byte (junk every node closes on is nobody's fault);
/// - it hands a client on (`retries`) no more often than it dialled.
func fuzzConnectionMachine(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = fuzzInput(data, size)
    guard let listener = bytes.first else { return 0 }
    var settings = ConnectionSettings(
        classification: listener & 1 == 0
            ? .fixed(.device)
            : .clientHello(SNIRules(patterns: [.console: ["console.example.com"]], defaultClass: .device)),
        connectTimeout: .seconds(3), idleTimeout: .seconds(20), handshakeTimeout: .seconds(5),
        replayLimit: listener & 8 == 0 ? ConnectionSettings.defaultReplayLimit : 100)
    let peer: [UInt8] = [192, 0, 2, 1]
    switch (listener >> 1) & 3 {
    case 1: settings.proxyProtocolFrom = [AddressRange("192.0.2.0/24")!]
    case 2: settings.proxyProtocolFrom = [AddressRange("198.51.100.0/24")!]
    default: break
    }
    var now = MonotonicInstant(nanoseconds: 1_000_000_000)
    var machine = ConnectionMachine<FuzzTarget>(settings: settings, now: now, peer: peer)
    var closed: ConnectionEnd?
    var routedTo: [FuzzTarget] = []
    var dialled: [FuzzTarget] = []
    var dials = 0
    var nodeAnswered = false
    var connectedOnce = false
    /// A node socket is connected: only then do executors report node events.
    var nodeConnected = false
    var clientSpokeFirst = false

    func check(_ action: ConnectionAction<FuzzTarget>, _ event: String) {
        if let closed {
            invariant(action == .none, "\(event) after close(\(closed)) asked for \(action)")
            return
        }
        switch action {
        case .close(let end):
            invariant(machine.phase == .ended, "close(\(end)) in phase \(machine.phase)")
            invariant(machine.end == end, "closed with \(end), the log reads \(String(describing: machine.end))")
            closed = end
        case .dial(let target):
            nodeConnected = false
            invariant(routedTo.contains(target), "dialled \(target), routed to \(routedTo)")
            invariant(!dialled.contains(target), "dialled \(target) twice, routed to \(routedTo)")
            dialled.append(target)
            dials += 1
        default:
            break
        }
    }

    for byte in bytes.dropFirst() {
        let argument = Int(byte >> 4)
        switch byte & 15 {
        case 0:
            check(machine.start(now: now), "start")
        case 1:
            check(machine.clientPreamble(preamble(argument), endOfInput: argument & 1 == 1, now: now), "preamble")
        case 2:
            let targets = (0...(argument % 3)).map { FuzzTarget(node: "ums\($0 + 1)") }
            let action = machine.routed(targets, now: now)
            if case .dial = action {
                routedTo = targets
                dialled = []
            }
            check(action, "routed")
        case 3:
            check(machine.refused(Refusal(trafficClass: .device, reasons: [])), "refused")
        case 4:
            check(machine.queued(now: now), "queued")
        case 5:
            let action = machine.connected(now: now)
            if case .startRelay = action {
                connectedOnce = true
                nodeConnected = true
            }
            check(action, "connected")
        case 6:
            let kinds: [NodeFailureKind] = [.refused, .timedOut, .socket(.connectionReset), .unresolved("ums.example")]
            check(machine.connectFailed(kinds[argument % kinds.count], now: now), "connectFailed")
        case 7, 8:
            let side: ConnectionSide = byte & 15 == 7 ? .client : .node
            let before = machine.phase
            // What executors never do: read after the end, read a node that is not connected, or
            // read the client with `read` while the listener classifies (that is `clientPreamble`).
            guard closed == nil, side == .client ? before != .classifying : nodeConnected else { continue }
            let verdict = machine.read(from: side, count: 1 + argument * 37, now: now)
            if side == .client, ![.relaying, .finishing, .lingering].contains(before) {
                switch verdict {
                case .keepForReplay, .close: break
                default: invariant(false, "client bytes read in phase \(before) were \(verdict)")
                }
            }
            if side == .client, !connectedOnce, verdict == .keepForReplay { clientSpokeFirst = true }
            if side == .node { nodeAnswered = true }
            if case .close(let end) = verdict { check(.close(end), "read") }
        case 9, 10:
            let side: ConnectionSide = byte & 15 == 9 ? .client : .node
            guard side == .client || nodeConnected else { continue }
            check(machine.inputEnded(side, now: now), "inputEnded")
        case 11:
            let side: ConnectionSide = argument & 1 == 0 ? .client : .node
            guard side == .client || nodeConnected else { continue }
            check(
                machine.failed(
                    side, .connectionReset, queuedForFailed: argument & 2 != 0, queuedForSurvivor: argument & 4 != 0,
                    now: now), "failed")
        case 12:
            check(machine.pendingWritten(now: now), "pendingWritten")
        case 13:
            now = now + .milliseconds(argument * argument * 100)
            check(machine.tick(now: now), "tick")
        case 14:
            switch argument % 4 {
            case 0: check(machine.shutDown(), "shutDown")
            case 1: check(machine.limitReached(.listener(10)), "limitReached")
            case 2: check(machine.outOfResources(.init(code: 24)), "outOfResources")
            default: check(machine.setupFailed("fuzz"), "setupFailed")
            }
        default:
            check(machine.firstBytes(startWithProxySignature: argument & 1 == 1), "firstBytes")
        }
        var unmatched = machine.failures
        for failure in machine.blamed {
            guard let index = unmatched.firstIndex(of: failure) else {
                invariant(false, "blamed \(failure), not among the failures \(machine.failures)")
                return 0
            }
            unmatched.remove(at: index)
        }
        invariant(machine.retries <= dials, "\(machine.retries) retries after \(dials) dials")
        if clientSpokeFirst, !nodeAnswered {
            // Every node got the client's bytes and none answered: closing on them is no node's fault.
            invariant(
                !machine.blamed.contains { $0.kind == .closedWithoutAnswer },
                "blamed \(machine.blamed) though no node answered what the client sent")
        }
    }
    return 0
}

/// A node target as the fuzzer names it.
struct FuzzTarget: RelayTarget, Hashable {
    var node: NodeID
}

/// What a client sends first, by `argument`: nothing, a PROXY header, junk, or both.
func preamble(_ argument: Int) -> [UInt8] {
    let header = Array("PROXY TCP4 203.0.113.9 192.0.2.10 5555 443\r\n".utf8)
    let junk = Array("GET / HTTP/1.1\r\n\r\n".utf8)
    switch argument >> 1 {
    case 0: return []
    case 1: return header
    case 2: return junk
    case 3: return header + junk
    case 4: return Array(header.prefix(9))
    default: return [0x16, 0x03, 0x01] + junk
    }
}

runFuzzer(fuzzConnectionMachine)
