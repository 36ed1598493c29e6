import BalancerCore
import FuzzSupport

/// The per-request rules of a `by-path` listener on any request NIO's HTTP codec could hand them.
///
/// Input: one flags byte, then NUL-separated fields: the request target, the method, and any
/// number of `Connection` values. Promises checked:
/// - a target classified as device traffic is one a node also reads as a device path: decoded
///   and normalised as a server would (percent escapes, backslashes, dot segments), it still
///   starts with `/device-connector/` (console logins must never reach update-mode nodes);
/// - what only the balancer may set (`X-SSL-CERT`, `X-Forwarded-*`) is always removed and set
///   once, and the fields that frame the body are never removed, whatever `Connection` names;
/// - a retry is only allowed without a body; HTTP/2 never upgrades or keeps a connection alive
///   by itself; the last request never keeps the connection alive;
/// - the `Connection` tokens other than the three known words are ASCII-lowercased, trimmed, non-empty.
func fuzzRequestPolicy(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = fuzzInput(data, size)
    guard let flags = bytes.first else { return 0 }
    let fields = bytes.dropFirst().split(separator: 0, omittingEmptySubsequences: false).map {
        String(decoding: $0, as: UTF8.self)
    }
    let target = fields.first ?? "/"
    let method = fields.count > 1 ? fields[1] : "GET"
    let connection = Array(fields.dropFirst(2))

    let request = RequestFacts(
        method: method, target: target, version: flags & 1 == 0 ? .http1_1 : .http1_0,
        connection: connection, upgrade: flags & 2 != 0, contentLength: flags & 4 != 0, chunked: flags & 8 != 0,
        headerCount: connection.count, overHTTP2: flags & 16 != 0)
    let lastRequest = flags & 32 != 0
    let client = ClientIdentity(address: "192.0.2.1", certificatePEM: flags & 64 != 0 ? "-----BEGIN x\n" : nil)
    let forwarding = RequestPolicy.forwarding(
        request, client: client, rules: .standard, lastRequest: lastRequest)

    if forwarding.trafficClass == .device {
        let seen = nodeReading(PathRules.path(of: target) ?? "")
        invariant(
            seen.hasPrefix("/device-connector/"),
            "\(target.debugDescription) routed as device, a node reads the path \(seen.debugDescription)")
    }
    for name in ["x-ssl-cert", "x-forwarded-for", "x-forwarded-proto"] {
        invariant(forwarding.removing.contains(name), "a client's \(name) is kept: \(forwarding.removing)")
    }
    for name in ["content-length", "transfer-encoding", "host"] {
        invariant(!forwarding.removing.contains(name), "\(name) removed, Connection: \(connection)")
    }
    let added = forwarding.adding.map { $0.name.lowercased() }
    invariant(added.count { $0 == "x-forwarded-proto" } == 1, "X-Forwarded-Proto set \(added) times")
    invariant(
        added.count { $0 == "x-ssl-cert" } == (flags & 64 != 0 ? 1 : 0), "X-SSL-CERT set wrongly: \(added)")
    invariant(!forwarding.retryable || forwarding.body == .none, "a request with a body may be retried")
    invariant(
        !(request.overHTTP2 && (forwarding.upgrade || forwarding.clientKeepAlive)),
        "HTTP/2 stream upgraded or kept alive")
    invariant(!(lastRequest && forwarding.clientKeepAlive), "the last request keeps the connection alive")
    invariant(forwarding.path.count <= 200, "the logged path has \(forwarding.path.count) characters")

    let options = ConnectionOptions(connection)
    for token in options.others {
        invariant(
            // Field names are ASCII tokens: lowercased byte by byte, as header names are compared.
            !token.isEmpty && !token.utf8.contains { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }
                && !token.contains(",")
                && token.first != " " && token.last != " " && token.first != "\t" && token.last != "\t"
                && !["close", "keep-alive", "upgrade"].contains(token),
            "Connection token \(token.debugDescription) from \(connection)")
    }
    return 0
}

/// The path as a lenient server resolves it: percent escapes decoded, backslashes as slashes,
/// dot segments removed (RFC 3986 5.2.4).
func nodeReading(_ path: String) -> String {
    var decoded: [UInt8] = []
    var bytes = path.utf8[...]
    while let byte = bytes.popFirst() {
        if byte == UInt8(ascii: "%"), bytes.count >= 2,
            let value = UInt8(String(decoding: bytes.prefix(2), as: UTF8.self), radix: 16)
        {
            decoded.append(value)
            bytes = bytes.dropFirst(2)
        } else {
            decoded.append(byte)
        }
    }
    let text = String(decoding: decoded, as: UTF8.self).replacingBackslashes()
    var output: [Substring] = []
    let segments = text.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
    for segment in segments {
        switch segment {
        case ".": continue
        case "..": _ = output.popLast()
        default: output.append(segment)
        }
    }
    // "/a/." and "/a/b/.." both end in a directory: "/a/".
    if segments.last == "." || segments.last == ".." { output.append("") }
    return "/" + output.joined(separator: "/")
}

extension String {
    fileprivate func replacingBackslashes() -> String {
        String(map { $0 == "\\" ? "/" : $0 })
    }
}

runFuzzer(fuzzRequestPolicy)
