import BalancerCore
import BalancerNIO
import BalancerTesting
import Foundation
import NIOCore
import Testing

/// The limits a reverse proxy needs, against real clients (curl, a NIOSSL client): each one
/// answered as documented, logged, and the balancer serving everyone else.
@Suite(.timeLimit(.minutes(2)))
struct HTTPLimitsTests {
    static var limits: HTTPSettings {
        var http = HTTPSettings()
        http.maxHeaders = 10
        http.maxHeaderSize = 4096
        http.headerTimeout = .milliseconds(500)
        http.keepAliveTimeout = .milliseconds(800)
        http.maxRequests = 2
        return http
    }

    func connect(_ setup: HTTPProxyTests.Setup) async throws -> TestClient.Connection {
        try await TLSTestHTTP.connect(
            to: try setup.balancer.address("web"), context: try TLSTestHTTP.context(setup.certificates))
    }

    static let request = "GET /device-connector/device/00E0C5000001/profile HTTP/1.1\r\nHost: ums\r\n\r\n"

    @Test func oversizedHeadsAndTooManyFieldsAreAnswered431() async throws {
        let setup = try await HTTPProxyTests.start(nodes: 1, http: Self.limits)
        let big = try await Curl.run(
            setup.tls + ["--http1.1", "-H", "X-Big: \(String(repeating: "a", count: 5000))", setup.url("/x")])
        let many = try await Curl.run(
            setup.tls + ["--http1.1"] + (1...10).flatMap { ["-H", "X-F\($0): \($0)"] } + [setup.url("/x")])
        let fine = try await Curl.run(setup.tls + ["--http1.1", setup.url(HTTPProxyTests.device)])
        try await setup.stop()
        #expect(big.first?.status == 431)
        #expect(many.first?.status == 431)
        #expect(many.first?.body.hasPrefix("more than 10 header fields (max_headers)") == true)
        #expect(fine.first?.status == 200, "everyone else is served")
        let reasons = setup.balancer.accessLog.compactMap { $0.metadata["reason"] }
        #expect(reasons.contains("request head larger than 4096 bytes (max_header_size)"), "\(reasons)")
        #expect(reasons.contains("more than 10 header fields (max_headers)"), "\(reasons)")
        #expect(setup.nodes.node("ums1").seen.count == 1, "nothing over a limit reached the node")
    }

    @Test func aSlowHeadAfterTheFirstIsAnswered408() async throws {
        let setup = try await HTTPProxyTests.start(nodes: 1, http: Self.limits)
        let connection = try await connect(setup)
        let (first, timedOut, closedAfter) = try await connection.executeThenClose { inbound, outbound in
            var reader = HTTPResponseReader(inbound)
            try await outbound.write(ByteBuffer(string: Self.request))
            let first = await reader.next()
            try await outbound.write(ByteBuffer(string: "GET /x HTTP/1.1\r\nHo"))
            let timedOut = await reader.next()
            return (first, timedOut, await reader.untilClosed())
        }
        try await setup.stop()
        #expect(first?.status == 200)
        #expect(timedOut?.status == 408)
        #expect(timedOut?.field("Connection") == ["close"])
        #expect(closedAfter < .seconds(2))
        #expect(
            setup.balancer.accessLog.last?.metadata["reason"]
                == "no complete request head within 500ms (header_timeout)")
    }

    @Test func anIdleKeptAliveConnectionIsClosedAfterTheKeepAliveTimeout() async throws {
        let setup = try await HTTPProxyTests.start(nodes: 1, http: Self.limits)
        let connection = try await connect(setup)
        let (first, idleFor) = try await connection.executeThenClose { inbound, outbound in
            var reader = HTTPResponseReader(inbound)
            try await outbound.write(ByteBuffer(string: Self.request))
            let first = await reader.next()
            return (first, await reader.untilClosed())
        }
        try await setup.stop()
        #expect(first?.status == 200)
        #expect(idleFor >= .milliseconds(700), "not before keep_alive_timeout")
        #expect(idleFor < .seconds(3))
        let line = setup.balancer.accessLog.last
        #expect(line?.metadata["outcome"] == "idle-timeout")
        #expect(line?.metadata["reason"] == "no request within 800ms (keep_alive_timeout)")
    }

    @Test func aConnectionServesMaxRequestsThenTheClientOpensAnother() async throws {
        let setup = try await HTTPProxyTests.start(nodes: 1, http: Self.limits)
        let transfers = try await Curl.run(
            setup.tls + ["--http1.1"] + Array(repeating: setup.url(HTTPProxyTests.device), count: 4))
        let http2 = try await Curl.run(
            setup.tls + ["--http2"] + Array(repeating: setup.url(HTTPProxyTests.device), count: 4))
        try await setup.stop()
        #expect(transfers.map(\.status) == [200, 200, 200, 200])
        #expect(transfers.map(\.connects) == [1, 0, 1, 0], "a new connection after every second request")
        #expect(http2.map(\.status) == [200, 200, 200, 200])
        #expect(http2.map(\.connects) == [1, 0, 1, 0], "HTTP/2: a GOAWAY after the second stream")
        let lines = setup.balancer.accessLog.filter { $0.metadata["listener"] == "web" }
        #expect(lines.count == 4)
        #expect(lines.allSatisfy { $0.metadata["requests"] == "2" }, "\(lines)")
    }

    @Test func aNIOSSLClientKeepsItsConnectionForSeveralRequests() async throws {
        let setup = try await HTTPProxyTests.start(nodes: 3)
        #expect(await setup.balancer.balancer.overrideMode(.update, of: "ums1", actor: "test"))
        let connection = try await connect(setup)
        let started = ContinuousClock.now
        let answers = try await connection.executeThenClose { inbound, outbound in
            var reader = HTTPResponseReader(inbound)
            var answers: [HTTPResponseReader.Answer?] = []
            for path in ["/console/login", HTTPProxyTests.device, "/console/login", "/webapp/"] {
                try await outbound.write(
                    ByteBuffer(string: "GET \(path) HTTP/1.1\r\nHost: ums\r\nX-SSL-CERT: x\r\n\r\n"))
                answers.append(await reader.next())
            }
            return answers
        }
        // executeThenClose returned once the client's TLS close completed.
        let closed = ContinuousClock.now - started
        try await setup.stop()
        #expect(closed < .seconds(2), "the client's close_notify is answered at once (\(closed))")
        #expect(answers.map { $0?.status } == [200, 200, 200, 200])
        let bodies = answers.compactMap {
            $0.flatMap { try? JSONSerialization.jsonObject(with: Data($0.body.utf8)) as? [String: Any] }
        }
        #expect(bodies.count == 4)
        for (index, body) in bodies.enumerated() where index != 1 {
            #expect(body["node"] as? String != "ums1", "console requests never reach the update-mode node")
        }
        #expect(Set(bodies.compactMap { $0["x_ssl_cert"] as? String }).count == 1, "the real certificate every time")
        #expect(setup.balancer.accessLog.filter { $0.metadata["listener"] == "web" }.count == 1)
    }
}
