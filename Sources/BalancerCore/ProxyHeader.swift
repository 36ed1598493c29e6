/// The PROXY protocol header (HAProxy's, versions 1 and 2) a front load balancer puts before a
/// connection's bytes to say who the client really is. Parsed without trapping on any input.
public struct ProxyHeader: Sendable, Hashable {
    /// An endpoint as the header carries it.
    public struct Address: Sendable, Hashable, CustomStringConvertible {
        /// 4 bytes (IPv4) or 16 (IPv6).
        public var ip: [UInt8]
        public var port: Int

        public init(ip: [UInt8], port: Int) {
            self.ip = ip
            self.port = port
        }

        /// "10.1.2.3" or "2001:db8::1".
        public var ipText: String { IPAddressText.format(ip) }

        public var description: String { ip.count == 16 ? "[\(ipText)]:\(port)" : "\(ipText):\(port)" }
    }

    /// The client and the address it connected to; nil for a `LOCAL` (v2) or `UNKNOWN` (v1)
    /// header, a health check of the front balancer itself: the connection's own addresses apply.
    public var source: Address?
    public var destination: Address?

    public init(source: Address?, destination: Address?) {
        self.source = source
        self.destination = destination
    }

    /// What the bytes seen so far say.
    public enum Parse: Sendable, Hashable {
        case needMoreData
        /// A complete header, `length` bytes long; what follows is the client's own.
        case complete(ProxyHeader, length: Int)
        case invalid(Problem)
    }

    /// What is wrong with bytes that are no PROXY header.
    public enum Problem: Sendable, Hashable, CustomStringConvertible {
        /// The connection does not begin with a PROXY header at all.
        case missing
        /// A header, but broken; the detail says how.
        case malformed(String)

        public var description: String {
            switch self {
            case .missing: "no PROXY protocol header"
            case .malformed(let detail): "malformed PROXY protocol header: \(detail)"
            }
        }
    }

    static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    static let v1Prefix = Array("PROXY ".utf8)
    /// A v1 header's longest line, CRLF included (from the specification).
    static let v1MaximumLength = 107
    /// The most a v2 header may take here (addresses plus TLVs); real ones are under 300 bytes.
    public static let v2MaximumLength = 16 + 2048

    /// Whether `bytes` (a connection's first bytes) begin like a PROXY header; nil while too few
    /// bytes arrived to tell.
    public static func startsWithSignature(_ bytes: some Collection<UInt8>) -> Bool? {
        let prefix = Array(bytes.prefix(v2Signature.count))
        if prefix.starts(with: v1Prefix) || prefix == v2Signature { return true }
        let mayBecomeOne =
            (prefix.count < v1Prefix.count && v1Prefix.starts(with: prefix))
            || (prefix.count < v2Signature.count && v2Signature.starts(with: prefix))
        return mayBecomeOne ? nil : false
    }

    /// Parses a header from the start of `bytes`. Call again with more while `needMoreData`.
    public static func parse(_ bytes: some Collection<UInt8>) -> Parse {
        let bytes = Array(bytes.prefix(v2MaximumLength))
        switch startsWithSignature(bytes) {
        case nil: return .needMoreData
        case false?: return .invalid(.missing)
        case true?: break
        }
        return bytes.starts(with: v1Prefix) ? parseV1(bytes) : parseV2(bytes)
    }

    // MARK: - Version 1

    private static func parseV1(_ bytes: [UInt8]) -> Parse {
        guard let end = bytes.prefix(v1MaximumLength).firstIndex(of: 0x0A) else {
            return bytes.count >= v1MaximumLength
                ? .invalid(.malformed("v1 line longer than 107 bytes")) : .needMoreData
        }
        guard end > 0, bytes[end - 1] == 0x0D else { return .invalid(.malformed("v1 line does not end in CRLF")) }
        let line = bytes[..<(end - 1)]
        guard line.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
            return .invalid(.malformed("v1 line holds control bytes"))
        }
        let words = line.split(separator: 0x20, omittingEmptySubsequences: false).map {
            String(decoding: $0, as: UTF8.self)
        }
        let length = end + 1
        guard words.count >= 2 else { return .invalid(.malformed("v1 line has no protocol")) }
        switch words[1] {
        case "UNKNOWN":
            return .complete(ProxyHeader(source: nil, destination: nil), length: length)
        case "TCP4", "TCP6":
            guard words.count == 6 else { return .invalid(.malformed("v1 \(words[1]) needs four fields")) }
            let family = words[1] == "TCP4" ? 4 : 16
            guard let sourceIP = IPAddressText.parse(words[2]), sourceIP.count == family,
                let destinationIP = IPAddressText.parse(words[3]), destinationIP.count == family
            else { return .invalid(.malformed("v1 address is not an \(words[1] == "TCP4" ? "IPv4" : "IPv6") address")) }
            guard let sourcePort = port(words[4]), let destinationPort = port(words[5]) else {
                return .invalid(.malformed("v1 port is not a number from 0 to 65535"))
            }
            return .complete(
                ProxyHeader(
                    source: Address(ip: sourceIP, port: sourcePort),
                    destination: Address(ip: destinationIP, port: destinationPort)),
                length: length)
        default:
            return .invalid(.malformed("v1 protocol '\(words[1].prefix(16))' is not TCP4, TCP6 or UNKNOWN"))
        }
    }

    private static func port(_ text: String) -> Int? {
        guard !text.isEmpty, text.count <= 5, text.allSatisfy(\.isASCII), let value = Int(text),
            (0...65_535).contains(value), text == String(value)
        else { return nil }
        return value
    }

    // MARK: - Version 2

    private static func parseV2(_ bytes: [UInt8]) -> Parse {
        guard bytes.count >= 16 else { return .needMoreData }
        let versionCommand = bytes[12]
        guard versionCommand >> 4 == 2 else { return .invalid(.malformed("v2 version \(versionCommand >> 4)")) }
        let command = versionCommand & 0x0F
        guard command <= 1 else { return .invalid(.malformed("v2 command \(command)")) }
        let family = bytes[13]
        let length = Int(bytes[14]) << 8 | Int(bytes[15])
        guard 16 + length <= v2MaximumLength else { return .invalid(.malformed("v2 header longer than allowed")) }
        guard bytes.count >= 16 + length else { return .needMoreData }
        let total = 16 + length
        // LOCAL: the front balancer speaking for itself; addresses (if any) are ignored.
        if command == 0 { return .complete(ProxyHeader(source: nil, destination: nil), length: total) }
        let body = bytes[16..<total]
        switch family {
        case 0x11:  // TCP over IPv4
            guard length >= 12 else { return .invalid(.malformed("v2 IPv4 addresses truncated")) }
            return .complete(addresses(body, width: 4), length: total)
        case 0x21:  // TCP over IPv6
            guard length >= 36 else { return .invalid(.malformed("v2 IPv6 addresses truncated")) }
            return .complete(addresses(body, width: 16), length: total)
        case 0x00:
            return .complete(ProxyHeader(source: nil, destination: nil), length: total)
        default:
            return .invalid(.malformed("v2 family \(family) is not TCP over IPv4 or IPv6"))
        }
    }

    private static func addresses(_ body: ArraySlice<UInt8>, width: Int) -> ProxyHeader {
        let start = body.startIndex
        let source = Array(body[start..<(start + width)])
        let destination = Array(body[(start + width)..<(start + 2 * width)])
        let ports = start + 2 * width
        let sourcePort = Int(body[ports]) << 8 | Int(body[ports + 1])
        let destinationPort = Int(body[ports + 2]) << 8 | Int(body[ports + 3])
        return ProxyHeader(
            source: Address(ip: source, port: sourcePort), destination: Address(ip: destination, port: destinationPort))
    }

    // MARK: - Writing (send_proxy)

    /// The header in `version` 1 or 2; addresses of different families, or none, make it `UNKNOWN`/`LOCAL`.
    public func encoded(version: Int) -> [UInt8] {
        guard let source, let destination, source.ip.count == destination.ip.count else {
            return version == 1
                ? Array("PROXY UNKNOWN\r\n".utf8) : Self.v2Signature + [0x20, 0x00, 0x00, 0x00]
        }
        if version == 1 {
            let family = source.ip.count == 4 ? "TCP4" : "TCP6"
            return Array(
                "PROXY \(family) \(source.ipText) \(destination.ipText) \(source.port) \(destination.port)\r\n".utf8)
        }
        let family: UInt8 = source.ip.count == 4 ? 0x11 : 0x21
        let length = 2 * source.ip.count + 4
        var header = Self.v2Signature + [0x21, family, UInt8(length >> 8), UInt8(length & 0xFF)]
        header += source.ip + destination.ip
        header += [UInt8(source.port >> 8), UInt8(source.port & 0xFF)]
        header += [UInt8(destination.port >> 8), UInt8(destination.port & 0xFF)]
        return header
    }
}

/// IP addresses between text and bytes, without the system's resolver (pure, never traps).
public enum IPAddressText {
    /// 4 bytes for a dotted IPv4 address, 16 for an IPv6 address (with `::` and an IPv4 tail), else nil.
    public static func parse(_ text: String) -> [UInt8]? {
        if text.contains(":") { return parseIPv6(text) }
        return parseIPv4(Substring(text))
    }

    private static func parseIPv4(_ text: Substring) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }),
                let value = Int(part), value <= 255, part == "0" || !part.hasPrefix("0")
            else { return nil }
            bytes.append(UInt8(value))
        }
        return bytes
    }

    private static func parseIPv6(_ text: String) -> [UInt8]? {
        guard text.count <= 45 else { return nil }
        let halves = text.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func groups(_ part: String, allowIPv4Tail: Bool) -> [UInt8]? {
            guard !part.isEmpty else { return [] }
            var bytes: [UInt8] = []
            let fields = part.split(separator: ":", omittingEmptySubsequences: false)
            for (index, field) in fields.enumerated() {
                if allowIPv4Tail, index == fields.count - 1, field.contains(".") {
                    guard let tail = parseIPv4(field) else { return nil }
                    bytes += tail
                    continue
                }
                guard (1...4).contains(field.count), let value = UInt16(field, radix: 16) else { return nil }
                bytes += [UInt8(value >> 8), UInt8(value & 0xFF)]
            }
            return bytes
        }
        if halves.count == 1 {
            guard let bytes = groups(halves[0], allowIPv4Tail: true), bytes.count == 16 else { return nil }
            return bytes
        }
        guard let head = groups(halves[0], allowIPv4Tail: false), let tail = groups(halves[1], allowIPv4Tail: true),
            head.count + tail.count <= 14
        else { return nil }
        return head + [UInt8](repeating: 0, count: 16 - head.count - tail.count) + tail
    }

    /// The usual text form: dotted for IPv4, RFC 5952 for IPv6.
    public static func format(_ bytes: [UInt8]) -> String {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        guard bytes.count == 16 else { return bytes.map { String($0, radix: 16) }.joined(separator: ":") }
        let words = stride(from: 0, to: 16, by: 2).map { UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]) }
        // The longest run of two or more zero words becomes "::".
        var best: (start: Int, length: Int) = (-1, 0)
        var index = 0
        while index < 8 {
            guard words[index] == 0 else {
                index += 1
                continue
            }
            var end = index
            while end < 8, words[end] == 0 { end += 1 }
            if end - index > best.length, end - index >= 2 { best = (index, end - index) }
            index = end
        }
        let hex = words.map { String($0, radix: 16) }
        guard best.start >= 0 else { return hex.joined(separator: ":") }
        let head = hex[..<best.start].joined(separator: ":")
        let tail = hex[(best.start + best.length)...].joined(separator: ":")
        return head + "::" + tail
    }
}

/// A range of client addresses as written in the configuration: `10.0.0.0/8`, `2001:db8::/32`,
/// or one address.
public struct AddressRange: Sendable, Hashable, CustomStringConvertible {
    public var network: [UInt8]
    public var prefixLength: Int

    /// Parses `text`; nil when it is no address or range.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let network = IPAddressText.parse(String(parts[0])) else { return nil }
        let bits = network.count * 8
        if parts.count == 2 {
            guard let length = Int(parts[1]), (0...bits).contains(length), parts[1].allSatisfy(\.isNumber) else {
                return nil
            }
            prefixLength = length
        } else {
            prefixLength = bits
        }
        self.network = network
    }

    /// Whether `ip` (4 or 16 bytes) lies in the range; an IPv4-mapped IPv6 address counts as its IPv4 address.
    public func contains(_ ip: [UInt8]) -> Bool {
        var ip = ip
        if ip.count == 16, network.count == 4, ip.prefix(12) == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF] {
            ip = Array(ip.suffix(4))
        }
        guard ip.count == network.count else { return false }
        var remaining = prefixLength
        for index in 0..<ip.count where remaining > 0 {
            let mask: UInt8 = remaining >= 8 ? 0xFF : UInt8(0xFF << (8 - remaining) & 0xFF)
            guard ip[index] & mask == network[index] & mask else { return false }
            remaining -= 8
        }
        return true
    }

    public var description: String { "\(IPAddressText.format(network))/\(prefixLength)" }
}
