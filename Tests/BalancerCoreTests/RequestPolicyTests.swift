import BalancerCore
import Testing

@Suite struct RequestPolicyTests {
    let client = ClientIdentity(address: "10.1.2.3", certificatePEM: "-----BEGIN CERTIFICATE-----\nAB+/=\n")

    func forwarding(_ request: RequestFacts, client: ClientIdentity? = nil, last: Bool = false) -> RequestForwarding {
        RequestPolicy.forwarding(request, client: client ?? self.client, rules: .standard, lastRequest: last)
    }

    @Test(arguments: [
        ("GET", "/device-connector/device/00E0C5000001/profile", TrafficClass.device),
        ("POST", "/console/login", .console),
        ("GET", "/webapp/index.html?x=1", .console),
        ("GET", "/device-connector/../console/login", .console),
    ])
    func everyRequestIsClassifiedByItsOwnPath(method: String, target: String, expected: TrafficClass) {
        #expect(forwarding(RequestFacts(method: method, target: target)).trafficClass == expected)
    }

    @Test func theBalancerSetsWhoTheClientIsAndNoClientCanForgeIt() {
        let plan = forwarding(RequestFacts(method: "GET", target: "/console/login"))
        for name in ["x-ssl-cert", "x-forwarded-for", "x-forwarded-proto"] {
            #expect(plan.removing.contains(name), "\(name) from the client is removed")
        }
        #expect(
            plan.adding == [
                HeaderField("X-Forwarded-For", "10.1.2.3"), HeaderField("X-Forwarded-Proto", "https"),
                HeaderField("X-SSL-CERT", "-----BEGIN%20CERTIFICATE-----%0AAB%2B%2F%3D%0A"),
            ])
        let withoutCertificate = forwarding(
            RequestFacts(method: "GET", target: "/console/login"), client: ClientIdentity(address: "10.1.2.3"))
        #expect(!withoutCertificate.adding.contains { $0.name == "X-SSL-CERT" })
        #expect(withoutCertificate.removing.contains("x-ssl-cert"))
    }

    @Test func hopByHopFieldsAndTheOnesConnectionNamesAreRemovedButNeverTheFraming() {
        let plan = forwarding(
            RequestFacts(
                method: "POST", target: "/console/login",
                connection: ["keep-alive, X-Secret", "Content-Length, Transfer-Encoding, host"], contentLength: true))
        for name in ["connection", "keep-alive", "proxy-connection", "te", "upgrade", "x-secret"] {
            #expect(plan.removing.contains(name), "\(name)")
        }
        for name in ["content-length", "transfer-encoding", "host"] {
            #expect(!plan.removing.contains(name), "\(name) frames the message: never removed")
        }
    }

    @Test(arguments: [
        (HTTPVersionNumber.http1_1, [String](), false, true),
        (.http1_1, ["close"], false, false),
        (.http1_0, [], false, false),
        (.http1_0, ["Keep-Alive"], false, true),
        (.http1_1, [], true, false),
    ])
    func keepAliveFollowsTheVersionTheConnectionFieldAndTheLastRequest(
        version: HTTPVersionNumber, connection: [String], last: Bool, keepAlive: Bool
    ) {
        let plan = forwarding(
            RequestFacts(method: "GET", target: "/webapp/", version: version, connection: connection), last: last)
        #expect(plan.clientKeepAlive == keepAlive)
    }

    @Test func anUpgradeKeepsItsUpgradeFieldsAndEndsKeepAlive() {
        let plan = forwarding(
            RequestFacts(
                method: "GET", target: "/device-connector/device/ws-connect", connection: ["Upgrade"], upgrade: true))
        #expect(plan.upgrade)
        #expect(!plan.removing.contains("upgrade"))
        #expect(plan.removing.contains("connection"))
        #expect(plan.adding.contains(HeaderField("Connection", "Upgrade")))
        #expect(!plan.clientKeepAlive)
        // Upgrade without the Connection token is no upgrade; HTTP/2 has none.
        #expect(!forwarding(RequestFacts(method: "GET", target: "/", upgrade: true)).upgrade)
        #expect(
            !forwarding(
                RequestFacts(method: "GET", target: "/", connection: ["upgrade"], upgrade: true, overHTTP2: true)
            )
            .upgrade)
    }

    @Test(arguments: [
        ("GET", false, false, true),
        ("HEAD", false, false, true),
        ("DELETE", false, false, true),
        ("PUT", true, false, false),
        ("POST", false, false, false),
        ("GET", false, true, false),
    ])
    func onlyIdempotentRequestsWithoutABodyAreSentTwice(
        method: String, contentLength: Bool, chunked: Bool, retryable: Bool
    ) {
        let plan = forwarding(
            RequestFacts(method: method, target: "/x", contentLength: contentLength, chunked: chunked))
        #expect(plan.retryable == retryable)
    }

    @Test func anHTTP2BodyWithoutLengthIsDecidedByItsFirstPart() {
        #expect(forwarding(RequestFacts(method: "POST", target: "/x", overHTTP2: true)).body == .decidedByFirstPart)
        #expect(
            forwarding(RequestFacts(method: "POST", target: "/x", contentLength: true, overHTTP2: true)).body
                == .asReceived)
        #expect(forwarding(RequestFacts(method: "GET", target: "/x")).body == .none)
        #expect(forwarding(RequestFacts(method: "POST", target: "/x", chunked: true)).body == .asReceived)
        #expect(!forwarding(RequestFacts(method: "GET", target: "/x", overHTTP2: true)).clientKeepAlive)
    }

    @Test(arguments: [
        (["keep-alive"], false, true, false, [String]()),
        (["Keep-Alive, Upgrade"], false, true, true, []),
        ([" close ", "X-Custom,\tTE"], true, false, false, ["x-custom", "te"]),
        (["", ",,"], false, false, false, []),
        (["x-a, X-A"], false, false, false, ["x-a"]),
    ])
    func connectionOptionsAreReadWithoutRegardToCaseOrSpaces(
        values: [String], close: Bool, keepAlive: Bool, upgrade: Bool, others: [String]
    ) {
        let options = ConnectionOptions(values)
        #expect(options.close == close)
        #expect(options.keepAlive == keepAlive)
        #expect(options.upgrade == upgrade)
        #expect(options.others == others)
    }

    @Test(arguments: [("chunked", true), ("gzip, Chunked ", true), ("chunked, gzip", false), ("", false)])
    func aBodyIsChunkedWhenChunkedIsTheLastCoding(value: String, chunked: Bool) {
        #expect(TransferCoding.endsChunked(value) == chunked)
    }

    @Test func theCertificateIsURLEncodedAsNginxDoes() {
        #expect(RequestPolicy.urlEncoded("a-b_c.d~e f/\n") == "a-b_c.d~e%20f%2F%0A")
    }
}

@Suite struct ResponsePolicyTests {
    let request = RequestPolicy.forwarding(
        RequestFacts(method: "GET", target: "/webapp/"), client: ClientIdentity(address: nil), rules: .standard)

    @Test func aKeepAliveAnswerPassesThroughWithoutHopByHopFields() {
        let plan = ResponsePolicy.forwarding(
            ResponseFacts(status: 200, connection: ["keep-alive, X-Node-Secret"], contentLength: true),
            request: request, clientVersion: .http1_1)
        #expect(plan.framing == .asReceived)
        #expect(plan.clientKeepAlive)
        #expect(plan.nodeReusable)
        #expect(plan.removing.contains("x-node-secret"))
        #expect(plan.removing.contains("keep-alive"))
        #expect(plan.adding.isEmpty)
    }

    @Test func aNodeThatClosesIsNotReusedAndTheClientStaysOpen() {
        let plan = ResponsePolicy.forwarding(
            ResponseFacts(status: 200, connection: ["close"], contentLength: true), request: request,
            clientVersion: .http1_1)
        #expect(!plan.nodeReusable)
        #expect(plan.clientKeepAlive)
    }

    @Test func aBodyUntilCloseIsChunkedForHTTP11AndEndsAnHTTP10Connection() {
        let untilClose = ResponseFacts(status: 200)
        let chunked = ResponsePolicy.forwarding(untilClose, request: request, clientVersion: .http1_1)
        #expect(chunked.framing == .chunked)
        #expect(chunked.adding.contains(HeaderField("Transfer-Encoding", "chunked")))
        #expect(!chunked.nodeReusable)
        var old = request
        old.clientKeepAlive = true
        let http10 = ResponsePolicy.forwarding(
            ResponseFacts(status: 200, chunked: true), request: old, clientVersion: .http1_0)
        #expect(http10.framing == .untilClose)
        #expect(http10.removing.contains("transfer-encoding"))
        #expect(http10.adding.contains(HeaderField("Connection", "close")))
        #expect(!http10.clientKeepAlive)
    }

    @Test func anHTTP10ClientThatKeepsAliveIsToldSo() {
        var old = request
        old.clientKeepAlive = true
        let plan = ResponsePolicy.forwarding(
            ResponseFacts(status: 200, contentLength: true), request: old, clientVersion: .http1_0)
        #expect(plan.adding == [HeaderField("Connection", "keep-alive")])
    }

    @Test func answersWithoutABodyLoseAChunkedField() {
        for facts in [
            ResponseFacts(status: 204, chunked: true), ResponseFacts(status: 304, chunked: true),
            ResponseFacts(status: 200, chunked: true, toHEAD: true),
        ] {
            let plan = ResponsePolicy.forwarding(facts, request: request, clientVersion: .http1_1)
            #expect(plan.removing.contains("transfer-encoding"), "\(facts)")
            #expect(plan.nodeReusable)
        }
    }

    @Test func continueIsPassedOnToHTTP11AndDroppedForHTTP10() {
        let continued = ResponsePolicy.forwarding(ResponseFacts(status: 100), request: request, clientVersion: .http1_1)
        #expect(continued.informational)
        #expect(!continued.drop)
        #expect(ResponsePolicy.forwarding(ResponseFacts(status: 100), request: request, clientVersion: .http1_0).drop)
    }

    @Test func a101ToAnUpgradeIsATunnelAndAnythingElseEndsTheConnection() {
        let upgrade = RequestPolicy.forwarding(
            RequestFacts(
                method: "GET", target: "/device-connector/device/ws-connect", connection: ["Upgrade"], upgrade: true),
            client: ClientIdentity(address: nil), rules: .standard)
        let switched = ResponsePolicy.forwarding(
            ResponseFacts(status: 101, connection: ["Upgrade"]), request: upgrade, clientVersion: .http1_1)
        #expect(switched.tunnel)
        #expect(!switched.removing.contains("upgrade"))
        #expect(!switched.removing.contains("connection"))
        #expect(switched.adding.isEmpty)
        let declined = ResponsePolicy.forwarding(
            ResponseFacts(status: 404, contentLength: true), request: upgrade, clientVersion: .http1_1)
        #expect(!declined.tunnel)
        #expect(!declined.clientKeepAlive)
        #expect(!declined.nodeReusable)
        #expect(declined.adding.contains(HeaderField("Connection", "close")))
    }

    @Test func anHTTP2StreamGetsNoConnectionFields() {
        let plan = ResponsePolicy.forwarding(
            ResponseFacts(status: 200, connection: ["close"], contentLength: true), request: request, clientVersion: nil
        )
        #expect(plan.adding.isEmpty)
        #expect(plan.framing == .asReceived)
    }
}
