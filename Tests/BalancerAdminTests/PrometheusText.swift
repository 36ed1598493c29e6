/// A strict parser of the Prometheus text exposition format (version 0.0.4), for checking what
/// `/metrics` serves: every line must be a HELP, TYPE or comment line, or a well-formed sample.
struct PrometheusText {
    /// One sample line: `name{label="value",...} value [timestamp]`.
    struct Sample: Hashable {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    /// A line that breaks the format.
    struct ParseError: Error, CustomStringConvertible {
        var line: Int
        var text: String
        var reason: String
        var description: String { "line \(line): \(reason): \(text)" }
    }

    private(set) var samples: [Sample] = []
    /// Metric family name to its TYPE (`counter`, `gauge`, `histogram`, `summary`, `untyped`).
    private(set) var types: [String: String] = [:]
    private(set) var help: [String: String] = [:]

    /// Parses `text`, throwing at the first line that is not valid.
    init(_ text: String) throws {
        var finishedFamilies: Set<String> = []
        var currentFamily: String?
        var seenSeries: Set<String> = []
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last == "" { lines.removeLast() }
        for (index, raw) in lines.enumerated() {
            let number = index + 1
            let line = String(raw)
            func fail(_ reason: String) -> ParseError { ParseError(line: number, text: line, reason: reason) }
            if line.isEmpty { continue }
            var scanner = Scanner(line)
            if line.hasPrefix("#") {
                scanner.advance()
                scanner.skipSpaces()
                let keyword = scanner.word()
                guard keyword == "HELP" || keyword == "TYPE" else { continue }  // a plain comment
                guard scanner.skipSpaces() > 0, let name = scanner.metricName() else { throw fail("no metric name") }
                if keyword == "HELP" {
                    guard help[name] == nil else { throw fail("second HELP for \(name)") }
                    guard scanner.atEnd || scanner.skipSpaces() > 0 else { throw fail("no space after the name") }
                    help[name] = try scanner.helpText().get(orThrow: fail("bad escape in HELP"))
                } else {
                    guard scanner.skipSpaces() > 0 else { throw fail("no type") }
                    let type = scanner.word()
                    guard ["counter", "gauge", "histogram", "summary", "untyped"].contains(type) else {
                        throw fail("unknown type '\(type)'")
                    }
                    guard types[name] == nil else { throw fail("second TYPE for \(name)") }
                    guard !samples.contains(where: { family(of: $0.name) == name }) else {
                        throw fail("TYPE after samples of \(name)")
                    }
                    scanner.skipSpaces()
                    guard scanner.atEnd else { throw fail("text after the type") }
                    types[name] = type
                }
                continue
            }
            guard let name = scanner.metricName() else { throw fail("no metric name") }
            var labels: [String: String] = [:]
            if scanner.peek == "{" {
                labels = try scanner.labels().get(orThrow: fail("malformed label set"))
            }
            guard scanner.skipSpaces() > 0 else { throw fail("no space before the value") }
            guard let value = Self.float(scanner.token()) else { throw fail("value is not a float") }
            if scanner.skipSpaces() > 0, !scanner.atEnd {
                guard Int64(scanner.token()) != nil else { throw fail("timestamp is not an integer") }
            }
            scanner.skipSpaces()
            guard scanner.atEnd else { throw fail("text after the sample") }

            let familyName = family(of: name)
            if familyName != currentFamily {
                if let currentFamily { finishedFamilies.insert(currentFamily) }
                guard !finishedFamilies.contains(familyName) else {
                    throw fail("samples of \(familyName) not together")
                }
                currentFamily = familyName
            }
            if types[familyName] == "histogram" {
                guard name != familyName else { throw fail("histogram sample without _bucket/_sum/_count") }
                if name.hasSuffix("_bucket") {
                    guard let bound = labels["le"], Self.float(bound) != nil else { throw fail("bucket without le") }
                }
            }
            let series =
                name + "{" + labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
                + "}"
            guard seenSeries.insert(series).inserted else { throw fail("duplicate series") }
            samples.append(Sample(name: name, labels: labels, value: value))
        }
        for (name, type) in types where type == "histogram" {
            let buckets = samples.filter { $0.name == name + "_bucket" }
            guard buckets.isEmpty || buckets.contains(where: { $0.labels["le"] == "+Inf" }) else {
                throw ParseError(line: 0, text: name, reason: "histogram without a +Inf bucket")
            }
        }
    }

    /// The samples named `name` whose labels include `labels`.
    func samples(_ name: String, _ labels: [String: String] = [:]) -> [Sample] {
        samples.filter { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }
    }

    /// The family a sample belongs to: itself, or the histogram/summary its suffix points at.
    private func family(of name: String) -> String {
        if types[name] != nil { return name }
        for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
            let base = String(name.dropLast(suffix.count))
            if let type = types[base], type == "histogram" || type == "summary" { return base }
        }
        return name
    }

    /// Go's ParseFloat as Prometheus uses it: decimal or exponent notation, `NaN`, `+Inf`, `-Inf`.
    static func float(_ text: String) -> Double? {
        switch text {
        case "NaN": return .nan
        case "+Inf", "Inf": return .infinity
        case "-Inf": return -.infinity
        default: break
        }
        var body = Substring(text)
        if body.first == "+" || body.first == "-" { body = body.dropFirst() }
        let parts = body.split(separator: "e", maxSplits: 1, omittingEmptySubsequences: false)
        let mantissa = parts[0].split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard !parts[0].isEmpty, mantissa.allSatisfy({ $0.allSatisfy(\.isASCIIDigit) }),
            mantissa.contains(where: { !$0.isEmpty })
        else { return nil }
        if parts.count == 2 {
            var exponent = parts[1]
            if exponent.first == "+" || exponent.first == "-" { exponent = exponent.dropFirst() }
            guard !exponent.isEmpty, exponent.allSatisfy(\.isASCIIDigit) else { return nil }
        }
        return Double(text)
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
    fileprivate var isNameStart: Bool { isASCII && (isLetter || self == "_" || self == ":") }
    fileprivate var isNameCharacter: Bool { isNameStart || isASCIIDigit }
}

extension Optional {
    fileprivate func get(orThrow error: @autoclosure () -> some Error) throws -> Wrapped {
        guard let self else { throw error() }
        return self
    }
}

/// Reads one line character by character.
private struct Scanner {
    private let characters: [Character]
    private var position = 0

    init(_ line: String) { characters = Array(line) }

    var atEnd: Bool { position == characters.count }
    var peek: Character? { atEnd ? nil : characters[position] }

    mutating func advance() { position += 1 }

    @discardableResult
    mutating func skipSpaces() -> Int {
        let start = position
        while peek == " " || peek == "\t" { advance() }
        return position - start
    }

    /// Up to the next space.
    mutating func token() -> String {
        var text = ""
        while let character = peek, character != " ", character != "\t" {
            text.append(character)
            advance()
        }
        return text
    }

    mutating func word() -> String {
        var text = ""
        while let character = peek, character.isLetter {
            text.append(character)
            advance()
        }
        return text
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    mutating func metricName() -> String? {
        guard let first = peek, first.isNameStart else { return nil }
        var name = ""
        while let character = peek, character.isNameCharacter {
            name.append(character)
            advance()
        }
        return name
    }

    /// `[a-zA-Z_][a-zA-Z0-9_]*`.
    private mutating func labelName() -> String? {
        guard let first = peek, first.isASCII, first.isLetter || first == "_" else { return nil }
        var name = ""
        while let character = peek, character.isASCII, character.isLetter || character.isNumber || character == "_" {
            name.append(character)
            advance()
        }
        return name
    }

    /// `{name="value",...}` with `\\`, `\"` and `\n` escapes; a trailing comma is allowed.
    mutating func labels() -> [String: String]? {
        guard peek == "{" else { return nil }
        advance()
        var labels: [String: String] = [:]
        while true {
            skipSpaces()
            if peek == "}" {
                advance()
                return labels
            }
            guard let name = labelName(), labels[name] == nil else { return nil }
            skipSpaces()
            guard peek == "=" else { return nil }
            advance()
            skipSpaces()
            guard peek == "\"" else { return nil }
            advance()
            var value = ""
            while true {
                guard let character = peek else { return nil }
                advance()
                if character == "\"" { break }
                if character == "\\" {
                    switch peek {
                    case "\\": value.append("\\")
                    case "\"": value.append("\"")
                    case "n": value.append("\n")
                    default: return nil
                    }
                    advance()
                } else {
                    value.append(character)
                }
            }
            labels[name] = value
            skipSpaces()
            if peek == "," {
                advance()
            } else if peek != "}" {
                return nil
            }
        }
    }

    /// The rest of a HELP line, with `\\` and `\n` escapes.
    mutating func helpText() -> String? {
        var text = ""
        while let character = peek {
            advance()
            guard character == "\\" else {
                text.append(character)
                continue
            }
            switch peek {
            case "\\": text.append("\\")
            case "n": text.append("\n")
            default: return nil
            }
            advance()
        }
        return text
    }
}
