import BalancerCore
import Testing

struct Node: RelayTarget, Hashable {
    var node: NodeID
}

@Suite struct HTTPExchangeMachineTests {
    let now = MonotonicInstant(nanoseconds: 1_000_000_000)

    func machine(retryable: Bool = true) -> HTTPExchangeMachine<Node> {
        HTTPExchangeMachine(
            trafficClass: .device, retryable: retryable, queueTimeout: .seconds(5), connectTimeout: .seconds(3))
    }

    @Test func aFailedConnectGoesToTheNextNodeBeforeTheClientNotices() {
        var machine = machine(retryable: false)
        #expect(machine.start() == .route(.device))
        #expect(machine.routed([Node(node: "ums1"), Node(node: "ums2")]) == .acquire(Node(node: "ums1"), reuse: true))
        #expect(machine.acquireFailed(.refused) == .acquire(Node(node: "ums2"), reuse: true))
        #expect(machine.acquired(reused: false) == .send)
        machine.responseStarted()
        machine.responseFinished()
        #expect(machine.outcome == .answered)
        #expect(machine.node == "ums2")
        #expect(machine.failures == [NodeFailure(node: "ums1", kind: .refused)])
    }

    @Test func whenEveryConnectFailsTheClientGets503WithTheNodes() {
        var machine = machine()
        _ = machine.routed([Node(node: "ums1")])
        guard case .answer(let answer) = machine.acquireFailed(.timedOut) else {
            Issue.record("no answer")
            return
        }
        #expect(answer.status == 503)
        #expect(answer.text.hasPrefix("no UMS server answered: ums1 connect timed out"))
        #expect(machine.outcome == .unavailable)
    }

    @Test func aClosedPooledConnectionGetsARetryableRequestAgainOnAFreshOne() {
        var machine = machine()
        _ = machine.routed([Node(node: "ums1"), Node(node: "ums2")])
        _ = machine.acquired(reused: true)
        #expect(machine.nodeFailed() == .acquire(Node(node: "ums1"), reuse: false))
        #expect(machine.retries == 1)
        #expect(machine.failures.isEmpty, "a node closing an idle connection is no fault of the node")
        // The fresh connection closing without an answer is the node's fault: the next node gets it.
        _ = machine.acquired(reused: false)
        #expect(machine.nodeFailed() == .acquire(Node(node: "ums2"), reuse: true))
        #expect(machine.failures == [NodeFailure(node: "ums1", kind: .closedWithoutAnswer)])
    }

    @Test func aRequestWithABodyIsNeverSentTwice() {
        var machine = machine(retryable: false)
        _ = machine.routed([Node(node: "ums1"), Node(node: "ums2")])
        _ = machine.acquired(reused: true)
        guard case .answer(let answer) = machine.nodeFailed() else {
            Issue.record("retried a POST")
            return
        }
        #expect(answer.status == 502)
        #expect(machine.outcome == .unavailable)
    }

    @Test func nothingIsRetriedOnceTheAnswerBegan() {
        var machine = machine()
        _ = machine.routed([Node(node: "ums1"), Node(node: "ums2")])
        _ = machine.acquired(reused: true)
        machine.responseStarted()
        #expect(machine.nodeFailed() == .abort)
        #expect(machine.outcome == .nodeFailed)
    }

    @Test func aRefusalIsAnswered503WithTheReason() {
        var machine = machine()
        let refusal = Refusal(trafficClass: .device, reasons: [("ums1", .down)])
        #expect(
            machine.refused(refusal)
                == .answer(
                    BalancerAnswer(
                        status: 503, text: "no UMS server can take device connections right now: ums1 down",
                        retryAfter: 30)))
        #expect(machine.outcome == .refused)
        #expect(machine.reason == .noEligibleNode(refusal))
    }

    @Test func aQueuedRequestRoutesAgainOnEachTickUntilTheQueueTimeout() {
        var machine = machine()
        #expect(machine.queued(now: now) == .none)
        #expect(machine.phase == .queued)
        #expect(machine.tick(now: now + .seconds(1)) == .route(.device))
        #expect(machine.queued(now: now + .seconds(1)) == .none)
        guard case .answer(let answer) = machine.tick(now: now + .seconds(5)) else {
            Issue.record("never gave up")
            return
        }
        #expect(answer.status == 503)
        #expect(machine.reason == .limit(.queueTimeout(.device, .seconds(5))))
    }

    @Test func aNewConnectionThatTakesTooLongFailsOverAtTheConnectTimeout() {
        var machine = machine()
        _ = machine.routed([Node(node: "ums1"), Node(node: "ums2")])
        machine.connecting(now: now)
        #expect(machine.tick(now: now + .seconds(2)) == .none)
        #expect(machine.tick(now: now + .seconds(3)) == .acquire(Node(node: "ums2"), reuse: true))
        #expect(machine.failures == [NodeFailure(node: "ums1", kind: .timedOut)])
    }
}

@Suite struct NodeIdlePoolTests {
    let now = MonotonicInstant(nanoseconds: 1_000_000_000)

    @Test func theMostRecentlyUsedIsTakenFirstAndTheOldestEvicted() {
        var pool = NodeIdlePool<String, Int>(limit: 2, idleTimeout: .seconds(10))
        #expect(pool.put(1, for: "ums1", now: now) == nil)
        #expect(pool.put(2, for: "ums1", now: now) == nil)
        #expect(pool.put(3, for: "ums1", now: now) == 1)
        #expect(pool.count == 2)
        #expect(pool.take(for: "ums1") == 3)
        #expect(pool.take(for: "ums2") == nil)
        let removed = pool.remove(2, for: "ums1")
        #expect(removed)
        #expect(pool.take(for: "ums1") == nil)
        #expect(pool.count == 0)
    }

    @Test func aSweepClosesIdleOnesAndEveryOneOfANodeThatTakesNoTraffic() {
        var pool = NodeIdlePool<String, Int>(limit: 4, idleTimeout: .seconds(10))
        _ = pool.put(1, for: "ums1", now: now)
        _ = pool.put(2, for: "ums1", now: now + .seconds(5))
        _ = pool.put(3, for: "ums2", now: now + .seconds(5))
        #expect(pool.sweep(now: now + .seconds(10)) { _ in true } == [1])
        #expect(pool.sweep(now: now + .seconds(11)) { $0 != "ums2" } == [3])
        #expect(pool.count == 1)
    }

    @Test func aLimitOfZeroKeepsNothing() {
        var pool = NodeIdlePool<String, Int>(limit: 0, idleTimeout: .seconds(10))
        #expect(pool.put(1, for: "ums1", now: now) == 1)
    }

    @Test(arguments: [
        (NodeStatus(id: "ums1", health: .up, mode: .normal), true),
        (NodeStatus(id: "ums1", health: .up, mode: .update), true),
        (NodeStatus(id: "ums1", health: .down, mode: .normal), false),
        (NodeStatus(id: "ums1", health: .up, mode: .installing), false),
        (NodeStatus(id: "ums1", health: .up, mode: .normal, admin: .draining), false),
        (NodeStatus(id: "ums1", health: .up, mode: .normal, admin: .maintenance), false),
    ])
    func idleConnectionsStayOnlyWithNodesThatTakeTraffic(status: NodeStatus, keeps: Bool) {
        #expect(NodeIdlePool<String, Int>.keepsConnections(to: status) == keeps)
    }

    @Test func aNodeDrainedForItsReconnectLosesItsIdleConnections() {
        var status = NodeStatus(id: "ums1", health: .up, mode: .update)
        status.reconnectDrain = true
        #expect(!NodeIdlePool<String, Int>.keepsConnections(to: status))
        #expect(!NodeIdlePool<String, Int>.keepsConnections(to: nil))
    }
}

@Suite struct ProxyProtocolGateTests {
    let trusted = [AddressRange("10.0.0.0/8")!]

    @Test func aTrustedSourceMustBeginWithAHeaderWhichIsTakenOff() {
        let gate = ProxyProtocolGate(from: trusted, peer: [10, 1, 2, 3])
        let header = Array("PROXY TCP4 192.0.2.7 10.0.0.1 5000 443\r\n".utf8)
        #expect(gate.offer(header.prefix(10), endOfInput: false) == .needMore)
        guard case .pass(let parsed?, let length) = gate.offer(header + [0x16, 0x03], endOfInput: false) else {
            Issue.record("no header")
            return
        }
        #expect(length == header.count)
        #expect(parsed.source?.ipText == "192.0.2.7")
        guard case .refuse(let end) = gate.offer([0x16, 0x03, 0x01, 0x00, 0x10, 0x01, 0x00, 0x00], endOfInput: false)
        else {
            Issue.record("TLS without a header from a trusted source passed")
            return
        }
        #expect(end.outcome == .handshakeFailed)
    }

    @Test func anyOtherSourceMayNotSendOne() {
        let gate = ProxyProtocolGate(from: trusted, peer: [192, 0, 2, 9])
        #expect(gate.offer([0x16, 0x03, 0x01], endOfInput: false) == .pass(nil, length: 0))
        guard case .refuse = gate.offer(Array("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n".utf8), endOfInput: false) else {
            Issue.record("an untrusted source named its client")
            return
        }
    }
}
