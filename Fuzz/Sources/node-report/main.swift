import BalancerCore
import FuzzSupport

/// `NodeReport.parse` on any bytes a status URL may answer: it never traps, keeps only versions
/// that compare, and refuses what is too large before reading it.
func fuzzNodeReport(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = fuzzInput(data, size)
    do throws(NodeReport.ParseError) {
        let report = try NodeReport.parse(bytes)
        invariant(bytes.count <= NodeReport.maximumSize, "read \(bytes.count) bytes")
        if let version = report.version {
            invariant(Version(version) != nil, "kept version '\(version)' that does not compare")
        }
    } catch .tooLarge(let count) {
        invariant(count == bytes.count && count > NodeReport.maximumSize, "too large at \(count) of \(bytes.count)")
    } catch {
        invariant(bytes.count <= NodeReport.maximumSize, "\(error) for \(bytes.count) bytes")
    }
    return 0
}

runFuzzer(fuzzNodeReport)
