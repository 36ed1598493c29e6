/// Parses configuration durations: a number with `ms`, `s`, `m` or `h` (`1.5s`, `500ms`).
public enum DurationText {
    /// The duration `text` stands for, or `nil` if it is not one (a bare number is not).
    public static func parse(_ text: String) -> Duration? {
        let units: [(suffix: String, milliseconds: Double)] = [
            ("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000),
        ]
        for unit in units where text.hasSuffix(unit.suffix) {
            let number = text.dropLast(unit.suffix.count)
            // "5ms" also ends in "s": only accept the longest suffix that leaves a plain number.
            guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
                let value = Double(number), value.isFinite
            else { continue }
            let milliseconds = value * unit.milliseconds
            guard milliseconds <= 1e12 else { return nil }
            return .milliseconds(Int64(milliseconds.rounded()))
        }
        return nil
    }

    /// Renders a duration the way it would be written in a config file.
    public static func format(_ duration: Duration) -> String {
        let ms = duration.components.seconds * 1_000 + duration.components.attoseconds / 1_000_000_000_000_000
        if ms % 3_600_000 == 0, ms > 0 { return "\(ms / 3_600_000)h" }
        if ms % 60_000 == 0, ms > 0 { return "\(ms / 60_000)m" }
        if ms % 1_000 == 0 { return "\(ms / 1_000)s" }
        return "\(ms)ms"
    }
}
