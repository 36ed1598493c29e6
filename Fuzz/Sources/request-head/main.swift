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
        // What a node behind the proxy could read as a line break or an end of string is refused.
        let texts = [head.method, head.target, head.version] + head.fields.flatMap { [$0.name, $0.value] }
        invariant(
            !texts.contains { $0.utf8.contains { $0 == 0x0D || $0 == 0x0A || $0 == 0x00 } },
            "a CR, LF or NUL inside the head's fields: \(head)")
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
