/// Finds YAML anchors (`&name`) and aliases (`*name`) before the text is composed.
///
/// Composing aliases is not linear in the size of the file: an alias bomb (each level a list of
/// aliases to the level below, used as a mapping key) makes Yams hash a tree that grows ninefold per
/// level, so `check-config` and a reload would run for minutes on a file of a few hundred bytes. A
/// balancer configuration never needs them, so they are refused, in one pass over the text.
enum YAMLAliasScan {
    /// Where an anchor or alias starts, 1-based.
    struct Found: Error, Equatable {
        var line: Int
        var column: Int
        /// "anchor" or "alias".
        var kind: String
    }

    /// The first anchor or alias in `text` outside comments, quoted scalars and block scalars.
    static func first(in text: String) -> Found? {
        var scanner = Scanner()
        var line = 1
        for content in text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            if let column = scanner.scan(Array(content)) {
                let kind = content[content.index(content.startIndex, offsetBy: column)] == UInt8(ascii: "&")
                return Found(line: line, column: column + 1, kind: kind ? "anchor" : "alias")
            }
            line += 1
        }
        return nil
    }

    /// The lexical state that carries from one line to the next.
    private struct Scanner {
        enum Quote { case single, double }
        var quote: Quote?
        /// The indentation of the line that opened a block scalar (`|` or `>`): more indented lines
        /// (and blank ones) are its content.
        var blockIndent: Int?

        /// The offset of the first anchor or alias on `line`, if any.
        mutating func scan(_ line: [UInt8]) -> Int? {
            let indent = line.prefix { $0 == UInt8(ascii: " ") }.count
            if let block = blockIndent {
                if indent == line.count || indent > block { return nil }
                blockIndent = nil
            }
            var index = 0
            while index < line.count {
                let byte = line[index]
                switch quote {
                case .single:
                    if byte == UInt8(ascii: "'") {
                        // '' is an escaped quote inside a single-quoted scalar.
                        if index + 1 < line.count, line[index + 1] == UInt8(ascii: "'") {
                            index += 1
                        } else {
                            quote = nil
                        }
                    }
                case .double:
                    if byte == UInt8(ascii: "\\") {
                        index += 1
                    } else if byte == UInt8(ascii: "\"") {
                        quote = nil
                    }
                case nil:
                    let atTokenStart = index == 0 || Self.separates(line[index - 1])
                    if atTokenStart {
                        switch byte {
                        case UInt8(ascii: "#"): return nil
                        case UInt8(ascii: "'"): quote = .single
                        case UInt8(ascii: "\""): quote = .double
                        case UInt8(ascii: "&"), UInt8(ascii: "*"):
                            if index + 1 < line.count, !Self.separates(line[index + 1]) { return index }
                        default: break
                        }
                    }
                    if (byte == UInt8(ascii: "|") || byte == UInt8(ascii: ">")), atTokenStart,
                        Self.endsBlockHeader(line, after: index)
                    {
                        blockIndent = indent
                        return nil
                    }
                }
                index += 1
            }
            return nil
        }

        /// What may stand before a token: white space and flow indicators.
        static func separates(_ byte: UInt8) -> Bool {
            switch byte {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "["), UInt8(ascii: "{"), UInt8(ascii: ","):
                true
            default: false
            }
        }

        /// `|` or `>` followed only by chomping/indentation indicators and an optional comment.
        static func endsBlockHeader(_ line: [UInt8], after index: Int) -> Bool {
            var rest = line[(index + 1)...].drop {
                $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-") || (48...57).contains($0)
            }
            rest = rest.drop { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
            return rest.isEmpty || rest.first == UInt8(ascii: "#")
        }
    }
}
