import Foundation
import NIOCore
import NIOPosix

/// One HTTP/1.1 exchange per new connection, the way a device or console would talk to a UMS
/// Server through the balancer.
public enum TestHTTP {
    /// An answer: status code and body.
    public struct Response: Sendable {
        public var status: Int
        public var body: String

        /// The body as a JSON object, if it is one.
        public var json: [String: Any]? {
            (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any]
        }
    }

    /// Sends one request on a new connection with `Connection: close` and reads the whole answer.
    public static func request(
        _ method: String,
        _ path: String,
        to address: SocketAddress,
        body: String = "",
        headers: [(String, String)] = []
    ) async throws -> Response {
        let connection = try await TestClient.connect(to: address)
        let head =
            "\(method) \(path) HTTP/1.1\r\nHost: ums\r\nConnection: close\r\nContent-Length: \(body.utf8.count)\r\n"
            + headers.map { "\($0.0): \($0.1)\r\n" }.joined() + "\r\n"
        let raw = try await connection.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: head + body))
            return try await TestClient.readAll(inbound)
        }
        return try parse(String(buffer: raw))
    }

    public static func parse(_ raw: String) throws -> Response {
        guard let split = raw.range(of: "\r\n\r\n") else {
            throw TestKitError("no HTTP answer (got \(raw.count) bytes: \(raw.prefix(80)))")
        }
        let head = raw[..<split.lowerBound]
        let parts = head.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, let status = Int(parts[1]) else {
            throw TestKitError("bad status line: \(head.prefix(80))")
        }
        return Response(status: status, body: String(raw[split.upperBound...]))
    }
}
