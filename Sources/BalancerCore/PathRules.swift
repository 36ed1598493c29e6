/// How a `by-path` listener maps HTTP request paths to traffic classes.
public struct PathRules: Sendable, Hashable {
    /// Path prefixes per class, e.g. `/device-connector/` for devices.
    public var prefixes: [TrafficClass: [String]]
    /// The class of a request whose path matches no prefix.
    public var defaultClass: TrafficClass

    public init(prefixes: [TrafficClass: [String]], defaultClass: TrafficClass) {
        self.prefixes = prefixes
        self.defaultClass = defaultClass
    }

    /// What a listener without `paths` uses: `/device-connector/` is device traffic, the rest console.
    public static let standard = PathRules(prefixes: [.device: ["/device-connector/"]], defaultClass: .console)

    /// The class for a request target: the longest matching prefix wins, console on a tie.
    ///
    /// A path a node could read differently than a prefix match does (dot segments, encoded
    /// slashes or dots, backslashes) is console traffic, the class with the stricter nodes.
    public func classify(target: String) -> TrafficClass {
        guard let path = Self.path(of: target) else { return .console }
        return classify(path: path)
    }

    /// The class for a path (`path(of:)` of a target).
    public func classify(path: String) -> TrafficClass {
        if Self.isAmbiguous(path) { return .console }
        var best: (length: Int, trafficClass: TrafficClass)?
        for trafficClass in [TrafficClass.console, .device] {
            for prefix in prefixes[trafficClass, default: []] where path.hasPrefix(prefix) {
                if best == nil || prefix.count > best!.length { best = (prefix.count, trafficClass) }
            }
        }
        return best?.trafficClass ?? defaultClass
    }

    /// The path of an origin-form (`/a/b?q`) or absolute-form (`https://host/a/b`) target. Read
    /// per request: a scan of the bytes, no Foundation string search.
    public static func path(of target: String) -> String? {
        let utf8 = target.utf8
        var start = utf8.startIndex
        if utf8.first != UInt8(ascii: "/") {
            // Absolute form: the path begins at the first '/' after "://".
            guard let scheme = schemeEnd(utf8) else { return nil }
            guard let slash = utf8[scheme...].firstIndex(of: UInt8(ascii: "/")) else { return "/" }
            start = slash
        }
        let end = utf8[start...].firstIndex { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") } ?? utf8.endIndex
        if start == utf8.startIndex, end == utf8.endIndex { return target }
        return String(target[start..<end])
    }

    /// Where what follows the first "://" begins.
    private static func schemeEnd(_ utf8: String.UTF8View) -> String.UTF8View.Index? {
        var index = utf8.startIndex
        var matched = 0
        while index != utf8.endIndex {
            let byte = utf8[index]
            utf8.formIndex(after: &index)
            switch (matched, byte) {
            case (0, UInt8(ascii: ":")): matched = 1
            case (1, UInt8(ascii: "/")): matched = 2
            case (2, UInt8(ascii: "/")): return index
            case (_, UInt8(ascii: ":")): matched = 1
            default: matched = 0
            }
        }
        return nil
    }

    /// Encoded `.`, `/` or `\\`, a backslash, or a `.`/`..` segment: read per request, so one pass
    /// over the bytes without copies.
    static func isAmbiguous(_ path: String) -> Bool {
        // Bytes of the current segment while it is all dots (-1: it is not), and the two bytes
        // before this one (an escape is '%' and two hex digits, in any case).
        var dots = 0
        var previous: UInt8 = 0
        var beforePrevious: UInt8 = 0
        for byte in path.utf8 {
            let lowered = byte | 0x20
            if beforePrevious == UInt8(ascii: "%") {
                if previous == UInt8(ascii: "2"), lowered == UInt8(ascii: "e") || lowered == UInt8(ascii: "f") {
                    return true
                }
                if previous == UInt8(ascii: "5"), lowered == UInt8(ascii: "c") { return true }
            }
            switch byte {
            case UInt8(ascii: "/"):
                if dots == 1 || dots == 2 { return true }
                dots = 0
            case UInt8(ascii: "."):
                if dots >= 0 { dots += 1 }
            case UInt8(ascii: "\\"):
                return true
            default:
                dots = -1
            }
            beforePrevious = previous
            previous = byte
        }
        return dots == 1 || dots == 2
    }
}

/// The certificate a TLS-terminating listener presents, and the CA its clients' certificates must chain to.
public struct ListenerTLS: Sendable, Hashable {
    /// PEM certificate chain, leaf first.
    public var certificate: String
    /// PEM private key of the leaf certificate.
    public var privateKey: String
    /// PEM CA certificates; when set, clients are asked for a certificate issued by one of them.
    public var clientCA: String?
    /// `tls.client_certificate`: whether a client must present one (when `clientCA` is set).
    public var clientCertificate: ClientCertificatePolicy = .required
    /// More certificates, each presented to clients whose TLS server name it covers.
    public var additional: [CertificateFiles] = []

    public init(certificate: String, privateKey: String, clientCA: String? = nil) {
        self.certificate = certificate
        self.privateKey = privateKey
        self.clientCA = clientCA
    }
}

/// `tls.client_certificate` of a `by-path` listener with a `client_ca`.
public enum ClientCertificatePolicy: String, Sendable, Hashable, CaseIterable {
    /// A client without a valid certificate fails the handshake.
    case required
    /// A presented certificate must be valid; a client without one is let through (its requests
    /// reach the nodes without `X-SSL-CERT`): OS 12 devices and the Console on one port.
    case optional
}

/// A PEM certificate chain and its private key.
public struct CertificateFiles: Sendable, Hashable {
    public var certificate: String
    public var privateKey: String

    public init(certificate: String, privateKey: String) {
        self.certificate = certificate
        self.privateKey = privateKey
    }
}

/// How a TLS-terminating listener talks TLS to the nodes.
public enum BackendTLS: Sendable, Hashable {
    /// TLS without verifying the node's certificate (`verify: none`).
    case noVerification
    /// The node's certificate must chain to a CA in this PEM file (`ca: FILE`).
    case trustRoots(String)
}

/// A `by-path` listener: TLS ends here, and the HTTP request path decides the class.
public struct PathListenerSettings: Sendable, Hashable {
    public var rules: PathRules
    public var tls: ListenerTLS
    public var backendTLS: BackendTLS
    /// Request limits and keep-alive on both sides (`http`).
    public var http = HTTPSettings()

    public init(rules: PathRules = .standard, tls: ListenerTLS, backendTLS: BackendTLS) {
        self.rules = rules
        self.tls = tls
        self.backendTLS = backendTLS
    }
}
