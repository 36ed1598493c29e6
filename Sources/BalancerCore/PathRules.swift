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
        if Self.isAmbiguous(path) { return .console }
        var best: (length: Int, trafficClass: TrafficClass)?
        for trafficClass in [TrafficClass.console, .device] {
            for prefix in prefixes[trafficClass, default: []] where path.hasPrefix(prefix) {
                if best == nil || prefix.count > best!.length { best = (prefix.count, trafficClass) }
            }
        }
        return best?.trafficClass ?? defaultClass
    }

    /// The path of an origin-form (`/a/b?q`) or absolute-form (`https://host/a/b`) target.
    public static func path(of target: String) -> String? {
        var rest = Substring(target)
        if let scheme = rest.range(of: "://"), !rest.hasPrefix("/") {
            rest = rest[scheme.upperBound...]
            guard let slash = rest.firstIndex(of: "/") else { return "/" }
            rest = rest[slash...]
        }
        guard rest.hasPrefix("/") else { return nil }
        if let end = rest.firstIndex(where: { $0 == "?" || $0 == "#" }) { rest = rest[..<end] }
        return String(rest)
    }

    static func isAmbiguous(_ path: String) -> Bool {
        let lowered = path.lowercased()
        if lowered.contains("%2e") || lowered.contains("%2f") || lowered.contains("%5c") || lowered.contains("\\") {
            return true
        }
        return path.split(separator: "/", omittingEmptySubsequences: false).contains { $0 == "." || $0 == ".." }
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
