import CLibFuzzer

#if canImport(Glibc)
import Glibc
#endif

/// Hands the process to libFuzzer, which calls `test` with one input after another (or with the
/// files named on the command line) and exits with its own status.
public func runFuzzer(_ test: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> Never {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, test))
}

/// The bytes of one libFuzzer input (`data` is nil for the empty input).
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    guard let data, size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: size))
}

/// Stops the run when a parser broke a promise: libFuzzer saves the input as a crash, and the
/// message says which promise.
public func invariant(
    _ holds: @autoclosure () -> Bool,
    _ message: @autoclosure () -> String,
    file: StaticString = #fileID,
    line: UInt = #line
) {
    guard holds() else { fatalError("invariant broken: \(message())", file: file, line: line) }
}

/// Where a streaming parser may be cut: the middle and one byte short of the end, the two places
/// a prefix most often disagrees with the whole.
public func cutPoints(_ count: Int) -> [Int] {
    Array(Set([count / 2, max(count - 1, 0)])).sorted()
}

/// Text made only when a broken promise's message needs it (an event's name, say): most events
/// break nothing, and writing every name would cost more than the machine under test.
public struct LazyText: CustomStringConvertible {
    let make: () -> String

    public init(_ make: @escaping () -> String) { self.make = make }

    public var description: String { make() }
}
