import BalancerCore
import BalancerNIO
import BalancerTesting
import NIOCore
import Testing

/// The relay connects to a node with the handshake's last ACK held back for the client's first
/// bytes: the node handles one segment fewer per connection, and a node that speaks first is never
/// kept waiting for it.
@Suite(.timeLimit(.minutes(1)))
struct HandshakeAckTests {
    @Test(arguments: DataPath.allCases)
    func aNodeThatSpeaksFirstGreetsAClientThatSendsNothingAtOnce(_ dataPath: DataPath) async throws {
        let cluster = try await BackendCluster.start([.greetThenEcho])
        let balancer = try await RunningBalancer.start(dataPath: dataPath, cluster: cluster)
        var waits: [Duration] = []
        for _ in 0..<5 {
            let started = ContinuousClock.now
            let greeting = try await TestClient.greeting(from: try balancer.address())
            waits.append(ContinuousClock.now - started)
            #expect(greeting == "ums1")
        }
        // Held until the kernel's delayed-ACK timer, the node's accept, and so its greeting,
        // would come 200 ms after the connect, every time.
        #expect(try #require(waits.min()) < .milliseconds(100), "\(waits)")
        try await balancer.stop()
        await cluster.stop()
    }

    #if os(Linux)
    @Test func aClientsFirstBytesCompleteTheNodesHandshake() async throws {
        let cluster = try await BackendCluster.start([.countSegmentsThenEcho])
        let balancer = try await RunningBalancer.start(dataPath: .automatic, cluster: cluster)
        let port = try #require(try balancer.address().port)
        var answers: [String] = []
        for _ in 0..<5 {
            answers.append(try RawClient.sendAtOnceAndReadLine(port: port, "hello\n"))
        }
        // SYN, then the bytes carrying the ACK; 3 when the ACK leaves on its own. These clients send
        // as their connect returns, so the relay has their bytes within its 1 ms hold.
        #expect(answers.filter { $0 == "segments 2" }.count >= 3, "\(answers)")
        try await balancer.stop()
        await cluster.stop()
    }
    #endif
}
