import Foundation
import NIOCore

/// Reads HTTP/1.1 responses one after another from a kept-alive connection's bytes (bodies
/// framed by `Content-Length`), as a client that sends its next request on the same connection would.
public struct HTTPResponseReader {
    private var iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private var pending = ByteBuffer()

    public init(_ inbound: NIOAsyncChannelInboundStream<ByteBuffer>) {
        iterator = inbound.makeAsyncIterator()
    }

    /// One response with its head's fields; nil when the server closed before one was complete.
    public struct Answer: Sendable {
        public var status: Int
        public var fields: [(String, String)]
        public var body: String

        /// The values of field `name`, in any case.
        public func field(_ name: String) -> [String] {
            fields.filter { $0.0.lowercased() == name.lowercased() }.map(\.1)
        }
    }

    /// The next response; nil when the connection closed (or failed) first.
    public mutating func next() async -> Answer? {
        while true {
            let text = String(buffer: pending)
            if let end = text.range(of: "\r\n\r\n") {
                let lines = text[..<end.lowerBound].split(separator: "\r\n")
                let parts = lines.first?.split(separator: " ", maxSplits: 2) ?? []
                let fields = lines.dropFirst().compactMap { line -> (String, String)? in
                    guard let colon = line.firstIndex(of: ":") else { return nil }
                    return (
                        String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                    )
                }
                let length = fields.first { $0.0.lowercased() == "content-length" }.flatMap { Int($0.1) } ?? 0
                let headLength = text[..<end.upperBound].utf8.count
                if pending.readableBytes >= headLength + length, parts.count >= 2, let status = Int(parts[1]) {
                    pending.moveReaderIndex(forwardBy: headLength)
                    let body = pending.readString(length: length) ?? ""
                    return Answer(status: status, fields: fields, body: body)
                }
            }
            do {
                guard var chunk = try await iterator.next() else { return nil }
                pending.writeBuffer(&chunk)
            } catch {
                return nil
            }
        }
    }

    /// Waits until the server closes the connection (reading and dropping what comes first) and
    /// says how long that took; the caller's time limit bounds the wait.
    public mutating func untilClosed() async -> Duration {
        let started = ContinuousClock.now
        while true {
            do {
                guard try await iterator.next() != nil else { break }
            } catch {
                break
            }
        }
        return ContinuousClock.now - started
    }
}
