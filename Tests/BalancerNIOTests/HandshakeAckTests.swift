import BalancerCore
import BalancerNIO
import BalancerTesting
import NIOCore
import Testing

#if canImport(Glibc)
import Glibc
#endif

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
            let connection = try await TestClient.connect(to: try balancer.address())
            let greeting = try await connection.executeThenClose { inbound, outbound in
                var iterator = inbound.makeAsyncIterator()
                let line = try await TestClient.readLine(&iterator)
                outbound.finish()
                return line
            }
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
            answers.append(try Self.sendAtOnceAndReadLine(port: port, "hello\n"))
        }
        // SYN, then the bytes carrying the ACK; 3 when the ACK leaves on its own. A client's bytes
        // come right after its own handshake, so the relay has them by the time the node answers.
        #expect(answers.filter { $0 == "segments 2" }.count >= 3, "\(answers)")
        try await balancer.stop()
        await cluster.stop()
    }

    /// Connects to 127.0.0.1:`port`, sends `text` at once (a device's request right after its
    /// handshake) and returns the first line that comes back.
    static func sendAtOnceAndReadLine(port: Int, _ text: String) throws -> String {
        let fd = socket(AF_INET, CInt(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestKitError("socket: \(errno)") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { throw TestKitError("connect: \(errno)") }
        guard send(fd, text, text.utf8.count, CInt(MSG_NOSIGNAL)) == text.utf8.count else {
            throw TestKitError("send: \(errno)")
        }
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while recv(fd, &byte, 1, 0) == 1, byte != UInt8(ascii: "\n") { line.append(byte) }
        return String(decoding: line, as: UTF8.self)
    }
    #endif
}
