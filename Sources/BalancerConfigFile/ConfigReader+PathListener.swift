import BalancerCore
import Foundation
import NIOSSL
import Yams

extension ConfigReader {
    /// The `tls`, `backend_tls` and `paths` keys of a `by-path` listener, with the files checked.
    mutating func pathListener(_ entries: [String: Entry], in listener: Node) -> PathListenerSettings? {
        let tls = required(entries, "tls", in: listener, "a by-path listener").flatMap { listenerTLS($0) }
        var backendTLS: BackendTLS?
        if let entry = entries["backend_tls"] {
            backendTLS = self.backendTLS(entry.value)
        } else {
            fail(
                listener,
                "a by-path listener is missing required key 'backend_tls': say how to reach the nodes over TLS,"
                    + " { verify: none } or { ca: FILE }")
        }
        let rules = entries["paths"].map { pathRules($0.value) } ?? .standard
        let http = entries["http"].map { httpSettings($0.value) } ?? HTTPSettings()
        guard let tls, let backendTLS, let rules, let http else { return nil }
        var settings = PathListenerSettings(rules: rules, tls: tls, backendTLS: backendTLS)
        settings.http = http
        return settings
    }

    /// `http`: request limits and keep-alive on both sides.
    private mutating func httpSettings(_ node: Node) -> HTTPSettings? {
        let keys: Set<String> = [
            "max_header_size", "max_headers", "header_timeout", "keep_alive_timeout", "max_requests",
            "node_idle_timeout", "node_idle_connections",
        ]
        guard let entries = mapping(node, "http", allowed: keys) else { return nil }
        var settings = HTTPSettings()
        var valid = true
        func take<T>(_ value: T?, _ key: String, into field: inout T) {
            guard entries[key] != nil else { return }
            if let value { field = value } else { valid = false }
        }
        take(
            entries["max_header_size"].flatMap {
                integer($0.value, "http max_header_size", in: HTTPSettings.headerSizeRange)
            }, "max_header_size", into: &settings.maxHeaderSize)
        take(
            entries["max_headers"].flatMap { integer($0.value, "http max_headers", in: HTTPSettings.headerCountRange) },
            "max_headers", into: &settings.maxHeaders)
        take(
            entries["header_timeout"].flatMap { duration($0.value, "http header_timeout") }, "header_timeout",
            into: &settings.headerTimeout)
        take(
            entries["keep_alive_timeout"].flatMap { duration($0.value, "http keep_alive_timeout") },
            "keep_alive_timeout", into: &settings.keepAliveTimeout)
        take(
            entries["max_requests"].flatMap { integer($0.value, "http max_requests", in: HTTPSettings.requestsRange) },
            "max_requests", into: &settings.maxRequests)
        take(
            entries["node_idle_timeout"].flatMap { duration($0.value, "http node_idle_timeout") },
            "node_idle_timeout", into: &settings.nodeIdleTimeout)
        take(
            entries["node_idle_connections"].flatMap {
                integer($0.value, "http node_idle_connections", in: HTTPSettings.idleConnectionsRange)
            }, "node_idle_connections", into: &settings.nodeIdleConnections)
        return valid ? settings : nil
    }

    private mutating func listenerTLS(_ node: Node) -> ListenerTLS? {
        let keys: Set<String> = ["certificate", "private_key", "client_ca", "client_certificate", "certificates"]
        guard let entries = mapping(node, "tls", allowed: keys) else { return nil }
        let main = certificateFiles(entries, in: node, "tls")
        let clientCA = entries["client_ca"].flatMap { pemFile($0.value, "tls client_ca") }
        var additional: [CertificateFiles] = []
        var complete = true
        if let list = entries["certificates"] {
            for item in sequence(list.value, "tls certificates") ?? [] {
                guard let itemEntries = mapping(item, "a tls certificate", allowed: ["certificate", "private_key"]),
                    let files = certificateFiles(itemEntries, in: item, "a tls certificate")
                else {
                    complete = false
                    continue
                }
                additional.append(files)
            }
        }
        let policy = entries["client_certificate"].flatMap {
            choice($0.value, "tls client_certificate", as: ClientCertificatePolicy.self)
        }
        if let entry = entries["client_certificate"], entries["client_ca"] == nil {
            fail(
                entry.keyNode, "tls client_certificate needs client_ca: the CA that client certificates must come from")
        }
        if entries["client_ca"] != nil, clientCA == nil { return nil }
        guard let main, complete else { return nil }
        var tls = ListenerTLS(certificate: main.certificate, privateKey: main.privateKey, clientCA: clientCA)
        tls.additional = additional
        if let policy { tls.clientCertificate = policy }
        return tls
    }

    /// `certificate` and `private_key`: readable PEM files, the key private and the certificate's.
    private mutating func certificateFiles(_ entries: [String: Entry], in node: Node, _ what: String)
        -> CertificateFiles?
    {
        let certificateNode = required(entries, "certificate", in: node, what)
        let keyNode = required(entries, "private_key", in: node, what)
        let certificate = certificateNode.flatMap { pemFile($0, "tls certificate") }
        let key = keyNode.flatMap { pemFile($0, "tls private_key") }
        guard let certificate, let key, let keyNode else { return nil }
        guard privateKeyIsPrivate(keyNode, key) else { return nil }
        guard keyMatches(certificate: certificate, key: key, at: keyNode) else { return nil }
        return CertificateFiles(certificate: certificate, privateKey: key)
    }

    private mutating func backendTLS(_ node: Node) -> BackendTLS? {
        guard let entries = mapping(node, "backend_tls", allowed: ["verify", "ca"]) else { return nil }
        switch (entries["verify"], entries["ca"]) {
        case (let verify?, nil):
            guard let text = string(verify.value, "backend_tls verify") else { return nil }
            guard text == "none" else {
                fail(verify.value, "backend_tls verify '\(text)' is not 'none' (to verify the nodes, give 'ca: FILE')")
                return nil
            }
            return .noVerification
        case (nil, let ca?):
            return pemFile(ca.value, "backend_tls ca").map(BackendTLS.trustRoots)
        case (_?, let ca?):
            fail(ca.keyNode, "backend_tls takes either 'verify: none' or 'ca', not both")
            return nil
        case (nil, nil):
            fail(node, "backend_tls needs 'verify: none' or 'ca: FILE'")
            return nil
        }
    }

    private mutating func pathRules(_ node: Node) -> PathRules? {
        guard let entries = mapping(node, "paths", allowed: ["console", "device", "default"]) else { return nil }
        var prefixes: [TrafficClass: [String]] = [:]
        var seen: [String: TrafficClass] = [:]
        for trafficClass in TrafficClass.allCases {
            guard let list = entries[trafficClass.rawValue],
                let items = sequence(list.value, "paths \(trafficClass)")
            else { continue }
            for item in items {
                guard let prefix = string(item, "path prefix") else { continue }
                guard prefix.hasPrefix("/"), !prefix.contains(where: { $0 == "?" || $0 == "#" || $0.isWhitespace })
                else {
                    fail(item, "path prefix '\(prefix)' must start with '/' and hold no '?', '#' or spaces")
                    continue
                }
                if let other = seen[prefix] {
                    fail(item, "path prefix '\(prefix)' is already listed under \(other)")
                    continue
                }
                seen[prefix] = trafficClass
                prefixes[trafficClass, default: []].append(prefix)
            }
        }
        guard let defaultEntry = entries["default"] else {
            fail(node, "paths is missing required key 'default' (device or console)")
            return nil
        }
        let defaultClass = choice(defaultEntry.value, "paths default", as: TrafficClass.self)
        if defaultClass == .device {
            warn(
                defaultEntry.value,
                "paths default 'device': console requests on paths no rule lists may reach nodes in update mode")
        }
        return defaultClass.map { PathRules(prefixes: prefixes, defaultClass: $0) }
    }

    // MARK: - Files

    /// A path to a readable PEM file.
    private mutating func pemFile(_ node: Node, _ what: String) -> String? {
        guard let path = path(node, what) else { return nil }
        let data: Data
        do {
            data = try SmallFile.read(path)
        } catch {
            fail(node, "\(what) '\(path)': \(error)")
            return nil
        }
        guard String(decoding: data, as: UTF8.self).contains("-----BEGIN ") else {
            fail(node, "\(what) '\(path)' is not a PEM file")
            return nil
        }
        return path
    }

    /// A private key others on the host can read is no longer private.
    private mutating func privateKeyIsPrivate(_ node: Node, _ path: String) -> Bool {
        let mode = (try? FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? 0
        guard mode & 0o004 == 0 else {
            fail(
                node,
                "tls private_key '\(path)' is readable by every user (mode \(String(mode & 0o777, radix: 8))):"
                    + " chmod 600 it")
            return false
        }
        return true
    }

    /// The certificate and key load, and the key is the certificate's.
    private mutating func keyMatches(certificate: String, key: String, at node: Node) -> Bool {
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(certificate)
            guard !chain.isEmpty else {
                fail(node, "tls certificate '\(certificate)' holds no certificate")
                return false
            }
            let privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
            let configuration = TLSConfiguration.makeServerConfiguration(
                certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(privateKey))
            _ = try NIOSSLContext(configuration: configuration)
            return true
        } catch {
            fail(node, "tls private_key '\(key)' does not match certificate '\(certificate)' (\(error))")
            return false
        }
    }
}
