import BalancerCore
import Testing

@Suite struct HTTPConnectionMachineTests {
    let start = MonotonicInstant(nanoseconds: 1_000_000_000)
    var settings: HTTPSettings {
        var settings = HTTPSettings()
        settings.maxHeaders = 10
        settings.maxRequests = 3
        settings.headerTimeout = .seconds(2)
        settings.keepAliveTimeout = .seconds(30)
        return settings
    }

    func machine() -> HTTPConnectionMachine {
        HTTPConnectionMachine(
            settings: settings, timeouts: HTTPConnectionTimeouts(handshake: .seconds(5), idle: .seconds(600)),
            now: start)
    }

    @Test func requestsFollowOneAnotherOnAKeptAliveConnection() {
        var machine = machine()
        machine.handshakeCompleted(now: start)
        #expect(machine.requestStarted(headerCount: 3, now: start) == .serve(last: false))
        #expect(machine.requestFinished(keepAlive: true, now: start) == .readNext)
        #expect(machine.phase == .awaitingRequest)
        #expect(machine.requestStarted(headerCount: 3, now: start) == .serve(last: false))
        #expect(machine.requestFinished(keepAlive: false, now: start) == .close(.closed))
        #expect(machine.end == .closed)
    }

    @Test func theLastOfMaxRequestsSaysSoAndClosesAfter() {
        var machine = machine()
        machine.handshakeCompleted(now: start)
        for _ in 0..<2 {
            _ = machine.requestStarted(headerCount: 1, now: start)
            _ = machine.requestFinished(keepAlive: true, now: start)
        }
        #expect(machine.requestStarted(headerCount: 1, now: start) == .serve(last: true))
        #expect(
            machine.requestFinished(keepAlive: false, now: start)
                == .close(ConnectionEnd(.closed, .httpLimit(.maxRequests(3)))))
        #expect(machine.limitHit == .maxRequests(3))
    }

    @Test func tooManyHeaderFieldsAreAnswered431() {
        var machine = machine()
        machine.handshakeCompleted(now: start)
        let end = ConnectionEnd(.badRequest, .httpLimit(.headerCount(10)))
        #expect(
            machine.requestStarted(headerCount: 11, now: start)
                == .reject(BalancerAnswer(status: 431, text: "more than 10 header fields (max_headers)"), end))
        #expect(machine.end == end)
    }

    @Test func anOversizedHeadIsAnswered431AndAMalformedOne400() {
        var big = machine()
        guard case .answerAndClose(let answer, let end) = big.headTooLarge() else {
            Issue.record("not answered")
            return
        }
        #expect(answer.status == 431)
        #expect(end.outcome == .badRequest)
        var broken = machine()
        guard case .answerAndClose(let bad, _) = broken.malformed("invalid header token") else {
            Issue.record("not answered")
            return
        }
        #expect(bad.status == 400)
        #expect(broken.limitHit == .malformed("invalid header token"))
    }

    @Test func theFirstHeadFallsUnderTheHandshakeTimeoutAndClosesSilently() {
        var machine = machine()
        #expect(machine.tick(now: start + .seconds(4)) == .none)
        guard case .close(let end) = machine.tick(now: start + .seconds(5)) else {
            Issue.record("not closed")
            return
        }
        #expect(end.outcome == .handshakeFailed)
        #expect(end.description == "handshake-failed: no complete TLS handshake and request head within 5s")

        var slowHead = self.machine()
        slowHead.handshakeCompleted(now: start)
        slowHead.bytesArrived(now: start + .seconds(1))
        guard case .close(let headEnd) = slowHead.tick(now: start + .seconds(5)) else {
            Issue.record("not closed")
            return
        }
        #expect(headEnd.description == "handshake-failed: no complete request head within 5s")
    }

    @Test func aLaterHeadHasHeaderTimeoutAndIsAnswered408() {
        var machine = machine()
        machine.handshakeCompleted(now: start)
        _ = machine.requestStarted(headerCount: 1, now: start)
        _ = machine.requestFinished(keepAlive: true, now: start)
        machine.bytesArrived(now: start + .seconds(10))
        #expect(machine.tick(now: start + .seconds(11)) == .none)
        guard case .answerAndClose(let answer, let end) = machine.tick(now: start + .seconds(12)) else {
            Issue.record("not answered")
            return
        }
        #expect(answer.status == 408)
        #expect(end == ConnectionEnd(.badRequest, .httpLimit(.headerTimeout(.seconds(2)))))
    }

    @Test func anIdleKeptAliveConnectionClosesAfterTheKeepAliveTimeout() {
        var machine = machine()
        machine.handshakeCompleted(now: start)
        _ = machine.requestStarted(headerCount: 1, now: start)
        _ = machine.requestFinished(keepAlive: true, now: start + .seconds(1))
        #expect(machine.tick(now: start + .seconds(30)) == .none)
        #expect(
            machine.tick(now: start + .seconds(31))
                == .close(ConnectionEnd(.idleTimeout, .httpLimit(.keepAliveTimeout(.seconds(30))))))
    }

    @Test func aRequestInFlightIsBoundOnlyByTheIdleTimeout() {
        var machine = machine()
        machine.handshakeCompleted(now: start)
        _ = machine.requestStarted(headerCount: 1, now: start)
        machine.activity(now: start + .seconds(500))
        #expect(machine.tick(now: start + .seconds(1000)) == .none)
        #expect(machine.tick(now: start + .seconds(1100)) == .close(.idleTimeout))
    }

    @Test func quiescingClosesAnIdleConnectionAtOnceAndABusyOneAfterItsAnswer() {
        var idle = machine()
        idle.handshakeCompleted(now: start)
        #expect(idle.quiesce() == .close(.shutdown))
        var busy = machine()
        busy.handshakeCompleted(now: start)
        _ = busy.requestStarted(headerCount: 1, now: start)
        #expect(busy.quiesce() == .none)
        #expect(busy.requestFinished(keepAlive: true, now: start) == .close(.shutdown))
    }

    @Test func aConnectionRefusedAtAcceptAnswersItsFirstRequest503() {
        var machine = machine()
        let end = ConnectionEnd(.refused, .limit(.listener(1)))
        machine.refuse(end, text: "full")
        machine.handshakeCompleted(now: start)
        #expect(
            machine.requestStarted(headerCount: 1, now: start)
                == .refuse(BalancerAnswer(status: 503, text: "full", retryAfter: 30), end))
    }

    @Test func aStreamOpenedWhileTheConnectionClosesIsNotServed() {
        var machine = machine()
        machine.handshakeCompleted(now: start)
        _ = machine.requestStarted(headerCount: 11, now: start)
        guard case .reject(let answer, _) = machine.requestStarted(headerCount: 1, now: start) else {
            Issue.record("served after the connection closed")
            return
        }
        #expect(answer.status == 503)
        #expect(machine.requests == 0)
    }

    @Test func http2StreamsOverlapAndTheConnectionIdlesWhenTheLastEnds() {
        var machine = machine()
        machine.handshakeCompleted(now: start)
        _ = machine.requestStarted(headerCount: 1, now: start)
        _ = machine.requestStarted(headerCount: 1, now: start)
        #expect(machine.inFlight == 2)
        #expect(machine.requestFinished(keepAlive: true, now: start) == .none)
        #expect(machine.requestFinished(keepAlive: true, now: start) == .readNext)
        #expect(machine.phase == .awaitingRequest)
    }
}
