import BalancerCore
import Foundation
import Yams

/// Walks the YAML node tree, collecting every problem with its position instead of stopping at
/// the first, so `check-config` can list them all at once.
struct ConfigReader {
    let file: String
    let baseDirectory: String
    private(set) var errors: [ConfigError] = []
    private(set) var warnings: [ConfigError] = []

    init(file: String, baseDirectory: String) {
        self.file = file
        self.baseDirectory = baseDirectory
    }

    /// One `key: value` entry of a mapping, with the key's node for error positions.
    struct Entry {
        var key: String
        var keyNode: Node
        var value: Node
    }

    // MARK: - Errors

    mutating func fail(_ node: Node?, _ message: String) {
        let mark = node?.mark
        errors.append(ConfigError(file: file, line: mark?.line ?? 1, column: mark?.column ?? 1, message: message))
    }

    /// Notes something valid that an operator should know (`check-config` prints it, exit 0).
    mutating func warn(_ node: Node?, _ message: String) {
        let mark = node?.mark
        warnings.append(
            ConfigError(file: file, line: mark?.line ?? 1, column: mark?.column ?? 1, message: message, isWarning: true)
        )
    }

    // MARK: - Structure

    /// The entries of a mapping with only `allowed` keys; unknown keys are reported at the key.
    mutating func mapping(_ node: Node, _ what: String, allowed: Set<String>) -> [String: Entry]? {
        guard case .mapping(let mapping) = node else {
            fail(node, "\(what) must be a mapping")
            return nil
        }
        var entries: [String: Entry] = [:]
        for (keyNode, value) in mapping {
            guard let key = keyNode.scalar?.string else {
                fail(keyNode, "\(what) has a key that is not a plain name")
                continue
            }
            guard allowed.contains(key) else {
                fail(
                    keyNode,
                    "unknown key '\(key)' in \(what) (expected one of: \(allowed.sorted().joined(separator: ", ")))")
                continue
            }
            entries[key] = Entry(key: key, keyNode: keyNode, value: value)
        }
        return entries
    }

    mutating func sequence(_ node: Node, _ what: String) -> [Node]? {
        guard case .sequence(let sequence) = node else {
            fail(node, "\(what) must be a list")
            return nil
        }
        return Array(sequence)
    }

    mutating func required(_ entries: [String: Entry], _ key: String, in node: Node, _ what: String) -> Node? {
        guard let entry = entries[key] else {
            fail(node, "\(what) is missing required key '\(key)'")
            return nil
        }
        return entry.value
    }

    // MARK: - Scalars

    mutating func string(_ node: Node, _ what: String) -> String? {
        guard case .scalar(let scalar) = node else {
            fail(node, "\(what) must be a single value")
            return nil
        }
        guard !scalar.string.isEmpty else {
            fail(node, "\(what) must not be empty")
            return nil
        }
        return scalar.string
    }

    /// A name used in logs, URLs and metrics labels: letters, digits, `.`, `_` and `-`.
    mutating func name(_ node: Node, _ what: String) -> String? {
        guard let text = string(node, what) else { return nil }
        let allowed = text.unicodeScalars.allSatisfy {
            $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "._-".unicodeScalars.contains($0))
        }
        guard allowed, text.count <= 64 else {
            fail(node, "\(what) '\(text)' may only hold letters, digits, '.', '_' and '-' (at most 64)")
            return nil
        }
        return text
    }

    mutating func integer(_ node: Node, _ what: String, in range: ClosedRange<Int>) -> Int? {
        guard let text = string(node, what) else { return nil }
        guard let value = Int(text) else {
            fail(node, "\(what) must be a whole number, not '\(text)'")
            return nil
        }
        guard range.contains(value) else {
            fail(node, "\(what) \(value) is out of range \(range.lowerBound)-\(range.upperBound)")
            return nil
        }
        return value
    }

    mutating func port(_ node: Node, _ what: String) -> Int? {
        integer(node, what, in: 1...65_535)
    }

    mutating func duration(_ node: Node, _ what: String, atLeast minimum: Duration = .milliseconds(1)) -> Duration? {
        guard let text = string(node, what) else { return nil }
        guard let duration = DurationText.parse(text) else {
            fail(node, "\(what) '\(text)' is not a duration (a number with ms, s, m or h, e.g. 500ms, 2s)")
            return nil
        }
        guard duration >= minimum else {
            fail(node, "\(what) must be at least \(DurationText.format(minimum))")
            return nil
        }
        return duration
    }

    mutating func choice<T: RawRepresentable & CaseIterable>(
        _ node: Node, _ what: String, as type: T.Type
    ) -> T? where T.RawValue == String {
        guard let text = string(node, what) else { return nil }
        guard let value = T(rawValue: text) else {
            fail(node, "\(what) '\(text)' is not one of: \(T.allCases.map(\.rawValue).joined(separator: ", "))")
            return nil
        }
        return value
    }

    /// A path, relative to the configuration file's folder unless absolute.
    mutating func path(_ node: Node, _ what: String) -> String? {
        guard let text = string(node, what) else { return nil }
        return text.hasPrefix("/") ? text : (baseDirectory as NSString).appendingPathComponent(text)
    }

    // MARK: - Addresses

    /// `HOST:PORT` with an IPv4 address or a bracketed IPv6 address.
    mutating func bindAddress(_ node: Node, _ what: String) -> Endpoint? {
        guard let text = string(node, what) else { return nil }
        guard let separator = text.lastIndex(of: ":") else {
            fail(node, "\(what) '\(text)' must be ADDRESS:PORT, e.g. 0.0.0.0:30001 or [::]:8443")
            return nil
        }
        var host = String(text[..<separator])
        let portText = String(text[text.index(after: separator)...])
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
            guard Self.isIPv6(host) else {
                fail(node, "\(what) '\(text)': '\(host)' is not an IPv6 address")
                return nil
            }
        } else if !Self.isIPv4(host) {
            fail(node, "\(what) '\(text)': '\(host)' is not an IP address (write IPv6 as [::1]:PORT)")
            return nil
        }
        guard let port = Int(portText) else {
            fail(node, "\(what) '\(text)': port '\(portText)' is not a number")
            return nil
        }
        guard (1...65_535).contains(port) else {
            fail(node, "\(what) '\(text)': port \(port) is out of range 1-65535")
            return nil
        }
        return Endpoint(host: host, port: port)
    }

    /// An IP address or a DNS name.
    mutating func host(_ node: Node, _ what: String) -> String? {
        guard let text = string(node, what) else { return nil }
        if Self.isIPv4(text) || Self.isIPv6(text) { return text }
        let validName = !text.allSatisfy({ $0.isNumber || $0 == "." }) && Self.isHostName(text)
        guard validName else {
            fail(node, "\(what) '\(text)' is neither an IP address nor a host name")
            return nil
        }
        return text
    }

    static func isIPv4(_ text: String) -> Bool {
        var address = in_addr()
        return inet_pton(AF_INET, text, &address) == 1
    }

    static func isIPv6(_ text: String) -> Bool {
        var address = in6_addr()
        return inet_pton(AF_INET6, text, &address) == 1
    }
}
