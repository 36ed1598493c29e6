import BalancerCore
import FuzzSupport

/// `ClientHello.parse` on any bytes: it never traps, and what it reads from a connection's first
/// bytes does not depend on how the bytes were split into reads.
func fuzzClientHello(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = fuzzInput(data, size)
    let result = ClientHello.parse(bytes)
    switch result {
    case .complete(let serverName?):
        invariant(
            !serverName.isEmpty && serverName.utf8.count <= 253 && serverName == serverName.lowercased()
                && !serverName.hasSuffix("."),
            "server name '\(serverName)' is not a normalised host name")
    case .complete(nil), .invalid:
        break
    case .needMoreData:
        invariant(bytes.count <= ClientHello.maximumSize, "waits for more than \(ClientHello.maximumSize) bytes")
    }
    // A listener parses again as bytes arrive: an earlier read may only ask for more.
    for cut in cutPoints(bytes.count) {
        let early = ClientHello.parse(bytes.prefix(cut))
        invariant(
            early == .needMoreData || early == result,
            "first \(cut) bytes parse as \(early), all \(bytes.count) as \(result)")
    }
    // Bytes after a decided ClientHello (the client's next record) change nothing.
    if result != .needMoreData {
        let later = ClientHello.parse(bytes + [0x16, 0x03, 0x03, 0x00, 0x01, 0x00])
        invariant(later == result, "trailing bytes turn \(result) into \(later)")
    }
    return 0
}

runFuzzer(fuzzClientHello)
