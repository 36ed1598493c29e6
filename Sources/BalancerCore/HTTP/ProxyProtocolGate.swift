/// The `proxy_protocol.from` rule at the start of a `by-path` connection, before TLS: a
/// connection from a listed source must begin with a PROXY header (taken off; it names the
/// client), and one from any other source that begins with a header is refused, since only
/// listed sources may say who the client is.
public struct ProxyProtocolGate: Sendable, Hashable {
    /// What the first bytes decide.
    public enum Verdict: Sendable, Hashable {
        /// Not enough bytes yet: offer them again with more.
        case needMore
        /// Go on: take `length` bytes off (the header), the rest is TLS. `header` when one was read.
        case pass(ProxyHeader?, length: Int)
        /// Close the connection: no header where one is due, a broken one, or one from an unlisted source.
        case refuse(ConnectionEnd)
    }

    /// The peer is a listed source: a header is due.
    public let trusted: Bool

    /// The gate for a connection from `peer` (4 or 16 bytes, when known) on a listener trusting `from`.
    public init(from: [AddressRange], peer: [UInt8]?) {
        trusted = peer.map { ip in from.contains { $0.contains(ip) } } ?? false
    }

    /// Everything the client sent so far; `endOfInput` once it sent its EOF.
    public func offer(_ bytes: some Collection<UInt8>, endOfInput: Bool) -> Verdict {
        guard trusted else {
            switch ProxyHeader.startsWithSignature(bytes) {
            case nil:
                return endOfInput ? .refuse(ConnectionEnd(.clientAborted, .clientClosedBeforeNode)) : .needMore
            case true?:
                return .refuse(
                    ConnectionEnd(
                        .handshakeFailed,
                        .handshake(.proxyProtocol("a PROXY header from a source not listed in proxy_protocol.from"))))
            case false?:
                return .pass(nil, length: 0)
            }
        }
        switch ProxyHeader.parse(bytes) {
        case .needMoreData:
            return endOfInput ? .refuse(ConnectionEnd(.clientAborted, .clientClosedBeforeNode)) : .needMore
        case .invalid(let problem):
            return .refuse(ConnectionEnd(.handshakeFailed, .handshake(.proxyProtocol(problem.description))))
        case .complete(let header, let length):
            return .pass(header, length: length)
        }
    }
}
