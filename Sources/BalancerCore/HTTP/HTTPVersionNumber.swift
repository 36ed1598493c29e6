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

/// The tokens of `Connection` field values, lowercased (`Keep-Alive, Upgrade` → `keep-alive`, `upgrade`).
public func connectionTokens(_ values: [String]) -> [String] {
    var tokens: [String] = []
    for value in values {
        for token in value.split(separator: ",") {
            let trimmed = token.trimmingSpaces.lowercased()
            if !trimmed.isEmpty { tokens.append(trimmed) }
        }
    }
    return tokens
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
