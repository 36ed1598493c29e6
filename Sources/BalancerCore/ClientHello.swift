/// Reads the server name from the first bytes of a TLS connection without terminating TLS.
public enum ClientHello {
    /// What the bytes seen so far say.
    public enum ParseResult: Sendable, Hashable {
        /// A ClientHello has begun but is not complete yet.
        case needMoreData
        /// A complete ClientHello; `serverName` is its SNI host name, if it sent one.
        case complete(serverName: String?)
        /// Not a TLS ClientHello, or a broken or oversized one.
        case invalid(Problem)
    }

    /// What is wrong with bytes that are no acceptable ClientHello.
    public enum Problem: Sendable, Hashable, CustomStringConvertible {
        /// The first bytes are not a TLS handshake record (plain HTTP, say).
        case notTLS
        /// Larger than `maximumSize`.
        case oversized
        /// Broken TLS framing or ClientHello fields; the detail says which.
        case malformed(String)

        public var description: String {
            switch self {
            case .notTLS: "not a TLS handshake"
            case .oversized: "ClientHello larger than \(ClientHello.maximumSize) bytes"
            case .malformed(let detail): detail
            }
        }
    }

    /// The largest ClientHello accepted, records included; real ones are under 2 KiB.
    public static let maximumSize = 16 * 1024

    /// Parses the first bytes a client sent. Call again with more bytes while `needMoreData`.
    public static func parse(_ bytes: some Collection<UInt8>) -> ParseResult {
        let bytes = Array(bytes)
        // Gather handshake bytes from as many TLS records as the message spans.
        var handshake: [UInt8] = []
        var offset = 0
        while true {
            guard offset + 5 <= bytes.count else {
                return bytes.count > maximumSize
                    ? .invalid(.oversized) : .needMoreData
            }
            guard bytes[offset] == 0x16 else {
                return .invalid(offset == 0 ? .notTLS : .malformed("TLS record of another type inside the ClientHello"))
            }
            guard bytes[offset + 1] == 0x03, bytes[offset + 2] <= 0x04 else {
                return .invalid(.malformed("unknown TLS record version"))
            }
            let length = Int(bytes[offset + 3]) << 8 | Int(bytes[offset + 4])
            guard length > 0, length <= 16_384 else { return .invalid(.malformed("bad TLS record length \(length)")) }
            guard offset + 5 + length <= bytes.count else {
                return offset + 5 + length > maximumSize
                    ? .invalid(.oversized) : .needMoreData
            }
            handshake += bytes[(offset + 5)..<(offset + 5 + length)]
            offset += 5 + length
            guard handshake.count >= 4 else { continue }
            guard handshake[0] == 0x01 else {
                return .invalid(.malformed("first handshake message is not a ClientHello"))
            }
            let messageLength = Int(handshake[1]) << 16 | Int(handshake[2]) << 8 | Int(handshake[3])
            guard 4 + messageLength <= maximumSize else {
                return .invalid(.oversized)
            }
            if handshake.count >= 4 + messageLength {
                return parseBody(handshake[4..<(4 + messageLength)])
            }
        }
    }

    private static func parseBody(_ body: ArraySlice<UInt8>) -> ParseResult {
        var reader = ByteReader(body)
        guard reader.skip(2 + 32),  // client version, random
            let sessionIDLength = reader.uint8(), sessionIDLength <= 32, reader.skip(Int(sessionIDLength)),
            let cipherSuitesLength = reader.uint16(), cipherSuitesLength >= 2, cipherSuitesLength % 2 == 0,
            reader.skip(Int(cipherSuitesLength)),
            let compressionLength = reader.uint8(), compressionLength >= 1, reader.skip(Int(compressionLength))
        else { return .invalid(.malformed("malformed ClientHello")) }
        if reader.isAtEnd { return .complete(serverName: nil) }
        guard let extensionsLength = reader.uint16(), var extensions = reader.slice(Int(extensionsLength)),
            reader.isAtEnd
        else { return .invalid(.malformed("malformed ClientHello extensions")) }
        while !extensions.isAtEnd {
            guard let type = extensions.uint16(), let length = extensions.uint16(),
                var data = extensions.slice(Int(length))
            else { return .invalid(.malformed("malformed ClientHello extension")) }
            guard type == 0 else { continue }  // server_name
            guard let listLength = data.uint16(), var list = data.slice(Int(listLength)) else {
                return .invalid(.malformed("malformed server_name extension"))
            }
            while !list.isAtEnd {
                guard let nameType = list.uint8(), let nameLength = list.uint16(),
                    let name = list.bytes(Int(nameLength))
                else { return .invalid(.malformed("malformed server_name extension")) }
                guard nameType == 0 else { continue }
                guard let hostName = hostName(name) else {
                    return .invalid(.malformed("server name is not a host name"))
                }
                return .complete(serverName: hostName)
            }
            return .complete(serverName: nil)
        }
        return .complete(serverName: nil)
    }

    /// Lower-cased ASCII host name without a trailing dot, or nil for anything else.
    private static func hostName(_ bytes: ArraySlice<UInt8>) -> String? {
        guard !bytes.isEmpty, bytes.count <= 253 else { return nil }
        let allowed = bytes.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x41...0x5a).contains(byte) || (0x61...0x7a).contains(byte)
                || byte == 0x2d || byte == 0x2e || byte == 0x5f
        }
        guard allowed else { return nil }
        var name = String(decoding: bytes, as: UTF8.self).lowercased()
        if name.hasSuffix(".") { name.removeLast() }
        // An empty label ("a..b", ".a", "a..") names no host; once trimmed, a name must not end
        // in a dot either, or it would miss the SNI rule written for the same host (found by fuzzing).
        guard !name.isEmpty, !name.split(separator: ".", omittingEmptySubsequences: false).contains("") else {
            return nil
        }
        return name
    }
}

/// Bounds-checked big-endian reads over a byte slice: input from the network never traps.
struct ByteReader {
    private var bytes: ArraySlice<UInt8>

    init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
    }

    var isAtEnd: Bool { bytes.isEmpty }

    mutating func uint8() -> UInt8? {
        bytes.popFirst()
    }

    mutating func uint16() -> UInt16? {
        guard bytes.count >= 2 else { return nil }
        defer { bytes = bytes.dropFirst(2) }
        return UInt16(bytes[bytes.startIndex]) << 8 | UInt16(bytes[bytes.startIndex + 1])
    }

    mutating func skip(_ count: Int) -> Bool {
        guard bytes.count >= count else { return false }
        bytes = bytes.dropFirst(count)
        return true
    }

    mutating func bytes(_ count: Int) -> ArraySlice<UInt8>? {
        guard bytes.count >= count else { return nil }
        defer { bytes = bytes.dropFirst(count) }
        return bytes.prefix(count)
    }

    mutating func slice(_ count: Int) -> ByteReader? {
        bytes(count).map(ByteReader.init)
    }
}
