import BalancerCore
import Foundation
import NIOCore
import NIOSSL

/// The TLS contexts of a `by-path` listener, built from its certificate files. Built again with
/// every listener context (start and each reload), so a reload picks up renewed certificates for
/// new connections while open ones keep theirs.
struct PathListenerTLS: Sendable {
    /// Terminates the clients' TLS with the listener's certificate.
    var server: NIOSSLContext
    /// Speaks TLS to the nodes.
    var backend: NIOSSLContext

    /// How long a close waits for the peer's close_notify before closing the socket.
    static let shutdownTimeout = TimeAmount.milliseconds(200)

    init(_ settings: PathListenerSettings) throws {
        let chain = try NIOSSLCertificate.fromPEMFile(settings.tls.certificate).map {
            NIOSSLCertificateSource.certificate($0)
        }
        var server = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain,
            privateKey: .privateKey(try NIOSSLPrivateKey(file: settings.tls.privateKey, format: .pem)))
        server.minimumTLSVersion = .tlsv12
        // Everything has been written when the balancer closes (a 503, the node's last bytes): wait
        // only briefly for the client's close_notify. Clients that never send one (scripts, many
        // HTTP stacks) would otherwise hold the connection for NIOSSL's default 5 s.
        server.shutdownTimeout = Self.shutdownTimeout
        // HTTP/2 when the client offers it (browsers, the Web App), else HTTP/1.1.
        server.applicationProtocols = ["h2", "http/1.1"]
        let choices = try settings.tls.additional.map(CertificateChoice.init)
        if !choices.isEmpty {
            // Each handshake: the first additional certificate that covers the client's server name, else the default.
            server.sslContextCallback = { values, promise in
                let name = values.serverHostname?.lowercased()
                guard let name, let choice = choices.first(where: { $0.covers(name) }) else {
                    promise.succeed(.noChanges)
                    return
                }
                var override = NIOSSLContextConfigurationOverride()
                override.certificateChain = choice.chain
                override.privateKey = .privateKey(choice.key)
                promise.succeed(override)
            }
        }
        if let clientCA = settings.tls.clientCA {
            // Requests a client certificate; `required` fails the handshake without a valid one,
            // `optional` only without a valid one when one is presented.
            server.certificateVerification =
                settings.tls.clientCertificate == .required ? .noHostnameVerification : .optionalVerification
            server.trustRoots = .file(clientCA)
            server.sendCANameList = true
        }
        self.server = try NIOSSLContext(configuration: server)

        var backend = TLSConfiguration.makeClientConfiguration()
        backend.shutdownTimeout = Self.shutdownTimeout
        backend.applicationProtocols = ["http/1.1"]
        switch settings.backendTLS {
        case .noVerification:
            backend.certificateVerification = .none
        case .trustRoots(let file):
            // Nodes are addressed by IP as often as by name: the chain is verified, the name is not.
            backend.certificateVerification = .noHostnameVerification
            backend.trustRoots = .file(file)
        }
        self.backend = try NIOSSLContext(configuration: backend)
    }

    /// A certificate as PEM text, for the `X-SSL-CERT` header.
    static func pem(_ certificate: NIOSSLCertificate) throws -> String {
        let base64 = Data(try certificate.toDERBytes()).base64EncodedString()
        var lines: [Substring] = []
        var rest = Substring(base64)
        while !rest.isEmpty {
            lines.append(rest.prefix(64))
            rest = rest.dropFirst(64)
        }
        return "-----BEGIN CERTIFICATE-----\n" + lines.joined(separator: "\n") + "\n-----END CERTIFICATE-----\n"
    }
}

/// An additional certificate of a `by-path` listener and the server names it covers.
struct CertificateChoice: Sendable {
    var chain: [NIOSSLCertificateSource]
    var key: NIOSSLPrivateKey
    /// DNS names from the leaf's subject alternative names, lowercased; `*.domain` for wildcards.
    var names: [String]

    init(_ files: CertificateFiles) throws {
        let certificates = try NIOSSLCertificate.fromPEMFile(files.certificate)
        chain = certificates.map { .certificate($0) }
        key = try NIOSSLPrivateKey(file: files.privateKey, format: .pem)
        names =
            certificates.first.map { leaf in
                leaf._subjectAlternativeNames().filter { $0.nameType == .dnsName }.map { name in
                    name.contents.withUnsafeBufferPointer { String(decoding: $0, as: UTF8.self).lowercased() }
                }
            } ?? []
    }

    /// `name` is one of the names, or one label under a `*.domain` name.
    func covers(_ name: String) -> Bool {
        names.contains { pattern in
            if pattern == name { return true }
            guard pattern.hasPrefix("*.") else { return false }
            let suffix = pattern.dropFirst(1)
            return name.hasSuffix(suffix) && !name.dropLast(suffix.count).contains(".") && name.count > suffix.count
        }
    }
}
