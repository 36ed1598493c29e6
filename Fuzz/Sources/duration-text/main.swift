import BalancerCore
import FuzzSupport

/// `DurationText.parse` on any text: it never traps, durations are not negative nor absurdly
/// long, and a duration written back with `format` reads as the same duration.
func fuzzDurationText(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = String(decoding: fuzzInput(data, size), as: UTF8.self)
    guard let duration = DurationText.parse(text) else { return 0 }
    invariant(
        duration >= .zero && duration <= .milliseconds(1_000_000_000_000), "'\(text)' reads as \(duration)")
    let written = DurationText.format(duration)
    invariant(DurationText.parse(written) == duration, "'\(text)' is \(duration), written '\(written)'")
    return 0
}

runFuzzer(fuzzDurationText)
