import BalancerCore
import FuzzSupport

/// `ProxyHeader.parse` on any bytes (v1 and v2): it never traps, a complete header takes no more
/// bytes than it was given, and what it read encodes back to the same header in either version.
func fuzzProxyHeader(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = fuzzInput(data, size)
    let result = ProxyHeader.parse(bytes)
    if case .complete(let header, let length) = result {
        invariant(
            length > 0 && length <= bytes.count && length <= ProxyHeader.v2MaximumLength,
            "complete header of \(length) bytes from \(bytes.count) given")
        invariant(
            ProxyHeader.parse(bytes.prefix(length)) == result, "the header's own \(length) bytes parse differently")
        invariant((header.source == nil) == (header.destination == nil), "one address without the other: \(header)")
        if let source = header.source, let destination = header.destination {
            invariant(
                [4, 16].contains(source.ip.count) && source.ip.count == destination.ip.count,
                "addresses of \(source.ip.count) and \(destination.ip.count) bytes")
            invariant(
                (0...65_535).contains(source.port) && (0...65_535).contains(destination.port),
                "ports \(source.port), \(destination.port)")
        }
        for version in [1, 2] {
            let encoded = header.encoded(version: version)
            let reparsed = ProxyHeader.parse(encoded)
            invariant(
                reparsed == .complete(header, length: encoded.count),
                "\(header) encoded as v\(version) parses as \(reparsed)")
        }
    }
    for cut in cutPoints(bytes.count) {
        let early = ProxyHeader.parse(bytes.prefix(cut))
        invariant(
            early == .needMoreData || early == result,
            "first \(cut) bytes parse as \(early), all \(bytes.count) as \(result)")
    }
    return 0
}

runFuzzer(fuzzProxyHeader)
