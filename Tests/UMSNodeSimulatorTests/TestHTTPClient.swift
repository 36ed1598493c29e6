import Foundation
import NIOCore
import NIOPosix

/// A parsed HTTP response, as the tests see it.
struct TestResponse {
    var status: Int
    var headers: [String: String]
    var body: [UInt8]

    func header(_ name: String) -> String? { headers[name.lowercased()] }

    func json() throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
            throw TestHTTPError.notJSONObject(String(decoding: body, as: UTF8.self))
        }
        return object
    }
}

enum TestHTTPError: Error {
    case closedBeforeResponse
    case malformed(String)
    case notJSONObject(String)
}

/// One raw HTTP/1.1 client connection: write any bytes, read parsed responses.
final class TestConnection {
    private var iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private var received: [UInt8] = []
    private var closed = false

    private init(inbound: NIOAsyncChannelInboundStream<ByteBuffer>, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>)
    {
        self.iterator = inbound.makeAsyncIterator()
        self.outbound = outbound
    }

    /// Connects to host:port and runs `body` with the connection, closing it afterwards.
    static func with<Result>(host: String, port: Int, _ body: (TestConnection) async throws -> Result) async throws
        -> Result
    {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(to: try SocketAddress(ipAddress: host, port: port)) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            try await body(TestConnection(inbound: inbound, outbound: outbound))
        }
    }

    /// Sends raw text.
    func send(_ text: String) async throws {
        try await outbound.write(ByteBuffer(string: text))
    }

    /// Sends a request with `Content-Length` (and no body when `body` is empty).
    func request(_ method: String, _ path: String, headers: [String: String] = [:], body: String = "") async throws
        -> TestResponse
    {
        var text = "\(method) \(path) HTTP/1.1\r\nHost: test\r\nContent-Length: \(body.utf8.count)\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        try await send(text + "\r\n" + body)
        return try await readResponse()
    }

    /// Reads the next complete response (bodies framed by Content-Length).
    func readResponse() async throws -> TestResponse {
        while true {
            if let (response, consumed) = try parse() {
                received.removeFirst(consumed)
                return response
            }
            guard try await receiveMore() else { throw TestHTTPError.closedBeforeResponse }
        }
    }

    /// Whether the server closes the connection without sending anything more.
    func closesWithoutData() async throws -> Bool {
        while try await receiveMore() {}
        return received.isEmpty
    }

    private func receiveMore() async throws -> Bool {
        guard !closed else { return false }
        do {
            guard let chunk = try await iterator.next() else {
                closed = true
                return false
            }
            received += Array(chunk.readableBytesView)
            return true
        } catch {
            // A reset counts as a close.
            closed = true
            return false
        }
    }

    private func parse() throws -> (TestResponse, Int)? {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        guard let headEnd = received.firstRange(of: separator) else { return nil }
        let lines = String(decoding: received[..<headEnd.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else {
            throw TestHTTPError.malformed(lines[0])
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
                in: .whitespaces)
        }
        let length = Int(headers["content-length"] ?? "0") ?? 0
        let end = headEnd.upperBound + length
        guard received.count >= end else { return nil }
        return (TestResponse(status: status, headers: headers, body: Array(received[headEnd.upperBound..<end])), end)
    }
}

enum TestHTTP {
    /// Sends one request on a new connection.
    static func request(
        _ method: String, host: String, port: Int, _ path: String, headers: [String: String] = [:],
        body: String = ""
    ) async throws -> TestResponse {
        try await TestConnection.with(host: host, port: port) { connection in
            try await connection.request(method, path, headers: headers, body: body)
        }
    }

    /// Whether a TCP connect to host:port is refused.
    static func isRefused(host: String, port: Int) async -> Bool {
        do {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(to: try SocketAddress(ipAddress: host, port: port)).get()
            try? await channel.close()
            return false
        } catch let error as IOError {
            return error.errnoCode == ECONNREFUSED
        } catch {
            return false
        }
    }
}
