/// A UMS version such as `12.07.100`, compared as dot-separated integers.
public struct NodeVersion: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The text the version was written as, e.g. `12.07.100`.
    public let text: String
    /// The numeric components, e.g. `[12, 7, 100]`.
    public let components: [Int]

    /// Parses a version; nil unless it is one or more dot-separated decimal integers.
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        var components: [Int] = []
        for part in parts {
            guard !part.isEmpty, part.count <= 9, part.allSatisfy({ $0.isASCII && $0.isNumber }),
                let value = Int(part)
            else { return nil }
            components.append(value)
        }
        self.text = text
        self.components = components
    }

    public var description: String { text }

    // Trailing zero components do not change a version: 12.7 == 12.7.0.
    private var normalized: ArraySlice<Int> {
        var slice = components[...]
        while let last = slice.last, last == 0 { slice = slice.dropLast() }
        return slice
    }

    public static func == (lhs: NodeVersion, rhs: NodeVersion) -> Bool {
        lhs.normalized == rhs.normalized
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(Array(normalized))
    }

    public static func < (lhs: NodeVersion, rhs: NodeVersion) -> Bool {
        let count = max(lhs.components.count, rhs.components.count)
        for index in 0..<count {
            let left = index < lhs.components.count ? lhs.components[index] : 0
            let right = index < rhs.components.count ? rhs.components[index] : 0
            if left != right { return left < right }
        }
        return false
    }
}
