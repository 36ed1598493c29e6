/// An HTTP/1.x version, as the request or status line carries it (HTTP/2 requests count as 1.1).
public struct HTTPVersionNumber: Sendable, Hashable, CustomStringConvertible {
    public var major: Int
    public var minor: Int

    public init(major: Int, minor: Int) {
        self.major = major
        self.minor = minor
    }

    public static let http1_0 = HTTPVersionNumber(major: 1, minor: 0)
    public static let http1_1 = HTTPVersionNumber(major: 1, minor: 1)

    /// Connections stay open unless a side says `close` (HTTP/1.1 and later); else only with `keep-alive`.
    public var keepsAliveByDefault: Bool { major > 1 || (major == 1 && minor >= 1) }

    public var description: String { "HTTP/\(major).\(minor)" }
}

/// One header field to add to a message.
public struct HeaderField: Sendable, Hashable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// What `Connection` field values say (RFC 9110 7.6.1): `close`, `keep-alive`, `upgrade`, and the
/// other fields they name (lowercased), which are hop-by-hop too. Read per request and per
/// answer, so the three common words are recognised without making strings.
public struct ConnectionOptions: Sendable, Hashable {
    public var close = false
    public var keepAlive = false
    public var upgrade = false
    /// Other field names listed, lowercased.
    public var others: [String] = []

    /// The options of `values` (each a comma-separated list of tokens).
    public init(_ values: [String]) {
        for value in values {
            // What servers and clients mostly send, compared whole first.
            switch value {
            case "keep-alive", "Keep-Alive":
                keepAlive = true
                continue
            case "close", "Close":
                close = true
                continue
            default:
                break
            }
            let utf8 = value.utf8
            var start = utf8.startIndex
            while start != utf8.endIndex {
                let end = utf8[start...].firstIndex(of: UInt8(ascii: ",")) ?? utf8.endIndex
                add(utf8[start..<end])
                start = end == utf8.endIndex ? end : utf8.index(after: end)
            }
        }
    }

    private mutating func add(_ raw: Substring.UTF8View) {
        let isSpace = { (byte: UInt8) in byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        let token = raw.drop(while: isSpace).reversed().drop(while: isSpace).reversed()
        guard !token.isEmpty else { return }
        if Self.equalsIgnoringCase(token, "close") {
            close = true
        } else if Self.equalsIgnoringCase(token, "keep-alive") {
            keepAlive = true
        } else if Self.equalsIgnoringCase(token, "upgrade") {
            upgrade = true
        } else {
            let name = String(decoding: token.map(Self.lowercased), as: UTF8.self)
            if !others.contains(name) { others.append(name) }
        }
    }

    private static func lowercased(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
    }

    private static func equalsIgnoringCase(_ token: some Collection<UInt8>, _ word: StaticString) -> Bool {
        guard token.count == word.utf8CodeUnitCount else { return false }
        return word.withUTF8Buffer { zip(token, $0).allSatisfy { lowercased($0) == $1 } }
    }
}

/// `Transfer-Encoding` values (RFC 9112 6.1).
public enum TransferCoding {
    /// The last coding of `value` (a comma-separated list) is `chunked`: the body is chunked.
    public static func endsChunked(_ value: String) -> Bool {
        let last = value.split(separator: ",").last ?? ""
        return last.trimmingSpaces.lowercased() == "chunked"
    }
}

extension StringProtocol {
    /// The text without leading and trailing spaces and tabs.
    var trimmingSpaces: String {
        var slice = Substring(self)
        while let first = slice.first, first == " " || first == "\t" { slice.removeFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice.removeLast() }
        return String(slice)
    }
}
