/// The head of an HTTP/1.x request: request line and header fields, as a proxy needs them.
public struct RequestHead: Sendable, Hashable {
    /// One header field, with the name as the client spelled it.
    public struct Field: Sendable, Hashable {
        public var name: String
        public var value: String

        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    public var method: String
    public var target: String
    public var version: String
    public var fields: [Field]

    public init(method: String, target: String, version: String = "HTTP/1.1", fields: [Field] = []) {
        self.method = method
        self.target = target
        self.version = version
        self.fields = fields
    }

    /// The values of every field named `name`, in order (names compare case-insensitively).
    public func values(_ name: String) -> [String] {
        let lowered = name.lowercased()
        return fields.filter { $0.name.lowercased() == lowered }.map(\.value)
    }

    /// Drops every field named `name`.
    public mutating func remove(_ name: String) {
        let lowered = name.lowercased()
        fields.removeAll { $0.name.lowercased() == lowered }
    }

    /// The client asks to switch protocols (a WebSocket): the connection stops being HTTP after this.
    public var isUpgrade: Bool {
        !values("Upgrade").isEmpty
            && values("Connection").contains { value in
                value.split(separator: ",").contains { $0.trimmingSpaces.lowercased() == "upgrade" }
            }
    }

    /// The head as sent on the wire, ending in the blank line.
    public var bytes: [UInt8] {
        var text = "\(method) \(target) \(version)\r\n"
        for field in fields { text += "\(field.name): \(field.value)\r\n" }
        text += "\r\n"
        return Array(text.utf8)
    }

    // MARK: - Parsing

    /// The outcome of reading a request head from the bytes received so far.
    public enum Parse: Sendable, Hashable {
        /// The head is not complete yet.
        case needMoreData
        /// Not an HTTP/1.x request head, or one larger than the limit.
        case invalid(Problem)
        /// A head, and how many bytes it took (what follows is the body or the upgraded stream).
        case complete(RequestHead, length: Int)
    }

    /// What is wrong with bytes that are no acceptable request head.
    public enum Problem: Sendable, Hashable, CustomStringConvertible {
        /// Larger than the limit, in bytes.
        case oversized(limit: Int)
        /// Binary bytes, or a first line no HTTP client sends (TLS on a plain port, say).
        case notHTTP
        /// Broken lines; the detail says which.
        case malformed(String)

        public var description: String {
            switch self {
            case .oversized(let limit): "request head larger than \(limit) bytes"
            case .notHTTP: "not an HTTP request"
            case .malformed(let detail): detail
            }
        }
    }

    /// The largest head accepted by default, including the blank line.
    public static let defaultLimit = 16 * 1024

    /// Parses a request head from the start of `bytes`. Never traps, whatever the input.
    public static func parse(_ bytes: some Collection<UInt8>, limit: Int = defaultLimit) -> Parse {
        var lines: [ArraySlice<UInt8>] = []
        var line: [UInt8] = []
        var length = 0
        for byte in bytes {
            length += 1
            if length > limit { return .invalid(.oversized(limit: limit)) }
            if byte == 0x0A {
                if line.last == 0x0D { line.removeLast() }
                // A CR that ends no line is a line break to some parsers and none to others: a
                // head that two servers read differently is how requests get smuggled (RFC 9112 2.2).
                if line.contains(0x0D) { return .invalid(.malformed("bare CR in the request head")) }
                if line.isEmpty {
                    if lines.isEmpty { return .invalid(.malformed("empty request line")) }
                    return head(lines).map { .complete($0, length: length) }
                        ?? .invalid(.malformed("malformed request head"))
                }
                lines.append(line[...])
                line.removeAll(keepingCapacity: true)
            } else {
                // Control bytes other than tab never appear in a head; catch binary (TLS) early.
                if byte < 0x20 && byte != 0x09 && byte != 0x0D || byte == 0x7F {
                    return .invalid(.notHTTP)
                }
                line.append(byte)
                if lines.isEmpty && line.count == 8 && !line.allSatisfy(Self.isTokenByte) && !line.contains(0x20) {
                    return .invalid(.notHTTP)
                }
            }
        }
        return .needMoreData
    }

    private static func head(_ lines: [ArraySlice<UInt8>]) -> RequestHead? {
        guard let requestLine = lines.first else { return nil }
        let parts = requestLine.split(separator: 0x20, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[0].allSatisfy(isTokenByte), !parts[1].isEmpty,
            parts[1].allSatisfy({ $0 > 0x20 && $0 < 0x7F }),
            let version = String(validating: parts[2], as: UTF8.self),
            version == "HTTP/1.1" || version == "HTTP/1.0"
        else { return nil }
        var fields: [Field] = []
        for line in lines.dropFirst() {
            // Obsolete line folding and names with spaces are how requests get smuggled: refuse.
            guard let colon = line.firstIndex(of: 0x3A), colon > line.startIndex,
                line[..<colon].allSatisfy(isTokenByte),
                let name = String(validating: line[..<colon], as: UTF8.self)
            else { return nil }
            let value = String(decoding: line[line.index(after: colon)...], as: UTF8.self).trimmingSpaces
            fields.append(Field(name: name, value: value))
        }
        return RequestHead(
            method: String(decoding: parts[0], as: UTF8.self), target: String(decoding: parts[1], as: UTF8.self),
            version: version, fields: fields)
    }

    /// RFC 9110 `tchar`.
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default: Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs (HTTP's optional whitespace), taken scalar by
    /// scalar as every HTTP parser does: as Characters, a space before a combining mark would be
    /// part of the mark's grapheme and stay in the value (found by fuzzing).
    var trimmingSpaces: String {
        var scalars = Substring(self).unicodeScalars
        while let first = scalars.first, first == " " || first == "\t" { scalars = scalars.dropFirst() }
        while let last = scalars.last, last == " " || last == "\t" { scalars = scalars.dropLast() }
        return String(scalars)
    }
}
