import BalancerCore
import FuzzSupport

/// `RequestHead.parse` on any bytes: it never traps, a complete head takes no more bytes than it
/// was given, and the head the proxy forwards (`bytes`) parses back to the head it understood.
func fuzzRequestHead(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = fuzzInput(data, size)
    let result = RequestHead.parse(bytes)
    if case .complete(let head, let length) = result {
        invariant(
            length > 0 && length <= bytes.count && length <= RequestHead.defaultLimit,
            "complete head of \(length) bytes from \(bytes.count) given")
        invariant(
            RequestHead.parse(bytes.prefix(length)) == result, "the head's own \(length) bytes parse differently")
        let forwarded = head.bytes
        let reparsed = RequestHead.parse(forwarded, limit: Int.max)
        invariant(
            reparsed == .complete(head, length: forwarded.count),
            "forwarded head parses as \(reparsed), was \(head)")
    }
    for cut in cutPoints(bytes.count) {
        let early = RequestHead.parse(bytes.prefix(cut))
        invariant(
            early == .needMoreData || early == result,
            "first \(cut) bytes parse as \(early), all \(bytes.count) as \(result)")
    }
    return 0
}

runFuzzer(fuzzRequestHead)
