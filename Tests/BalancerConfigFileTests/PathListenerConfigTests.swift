import BalancerConfigFile
import BalancerCore
import Foundation
import Testing

/// `by-path` listeners: TLS files are checked when the file is read, so a bad reload keeps the old configuration.
@Suite(.timeLimit(.minutes(1)))
struct PathListenerConfigTests {
    /// A folder with the development PKI from `certs/generate.sh`.
    final class Certificates {
        let directory: String

        init() throws {
            directory = NSTemporaryDirectory() + "path-config-\(UUID().uuidString)"
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent()
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/bash")
            process.arguments = [root.appendingPathComponent("certs/generate.sh").path, directory]
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else { throw CocoaError(.fileWriteUnknown) }
        }

        deinit { try? FileManager.default.removeItem(atPath: directory) }
    }

    func config(_ listener: String) -> String {
        """
        listeners:
          - name: web-offload
            bind: 0.0.0.0:9443
            backend_port: 8443
            class: by-path
        \(listener)
        nodes: [{ id: ums1, host: 10.0.0.11 }]
        """
    }

    func errors(_ text: String, in certificates: Certificates) -> [String] {
        do {
            _ = try ConfigFile.parse(text, file: "b.yaml", baseDirectory: certificates.directory)
            return []
        } catch {
            return error.errors.map(\.description)
        }
    }

    @Test func readsTheWebOffloadListenerOfTheSpecification() throws {
        let certificates = try Certificates()
        let text = config(
            """
                tls: { certificate: balancer.pem, private_key: balancer.key, client_ca: ca.pem }
                backend_tls: { verify: none }
                paths: { device: [/device-connector/], default: console }
                handshake_timeout: 3s
            """)
        let configuration = try ConfigFile.parse(text, file: "b.yaml", baseDirectory: certificates.directory)
        let listener = try #require(configuration.listeners.first)
        guard case .byPath(let settings) = listener.classification else {
            Issue.record("not by-path: \(listener.classification)")
            return
        }
        #expect(settings.tls.certificate == certificates.directory + "/balancer.pem")
        #expect(settings.tls.clientCA == certificates.directory + "/ca.pem")
        #expect(settings.backendTLS == .noVerification)
        #expect(settings.rules == .standard)
        #expect(listener.handshakeTimeout == .seconds(3))
    }

    @Test func clientCertificatesCanBeOptionalWithAClientCA() throws {
        let certificates = try Certificates()
        let optional = config(
            """
                tls: { certificate: balancer.pem, private_key: balancer.key, client_ca: ca.pem, client_certificate: optional }
                backend_tls: { verify: none }
            """)
        let configuration = try ConfigFile.parse(optional, file: "b.yaml", baseDirectory: certificates.directory)
        guard case .byPath(let settings) = configuration.listeners.first?.classification else {
            Issue.record("not by-path")
            return
        }
        #expect(settings.tls.clientCertificate == .optional)

        let misspelt = config(
            """
                tls: { certificate: balancer.pem, private_key: balancer.key, client_ca: ca.pem, client_certificate: maybe }
                backend_tls: { verify: none }
            """)
        #expect(
            errors(misspelt, in: certificates) == [
                "b.yaml:6:105: tls client_certificate 'maybe' is not one of: required, optional"
            ])
        let withoutCA = config(
            """
                tls: { certificate: balancer.pem, private_key: balancer.key, client_certificate: optional }
                backend_tls: { verify: none }
            """)
        #expect(
            errors(withoutCA, in: certificates)
                == [
                    "b.yaml:6:66: tls client_certificate needs client_ca: the CA that client certificates must come from"
                ])
    }

    @Test func aDeviceDefaultForPathsIsWarnedAbout() throws {
        let certificates = try Certificates()
        let text = config(
            """
                tls: { certificate: balancer.pem, private_key: balancer.key }
                backend_tls: { verify: none }
                paths: { device: [/device-connector/], default: device }
            """)
        let checked = try ConfigFile.check(text, file: "b.yaml", baseDirectory: certificates.directory)
        #expect(
            checked.warnings.map(\.description) == [
                "b.yaml:8:53: warning: paths default 'device': console requests on paths no rule lists may reach nodes"
                    + " in update mode"
            ])
    }

    @Test func pathsDefaultToDeviceConnectorForDevicesAndCAVerification() throws {
        let certificates = try Certificates()
        let text = config(
            """
                tls: { certificate: balancer.pem, private_key: balancer.key }
                backend_tls: { ca: ca.pem }
            """)
        let configuration = try ConfigFile.parse(text, file: "b.yaml", baseDirectory: certificates.directory)
        #expect(
            configuration.listeners.first?.classification
                == .byPath(
                    PathListenerSettings(
                        rules: .standard,
                        tls: ListenerTLS(
                            certificate: certificates.directory + "/balancer.pem",
                            privateKey: certificates.directory + "/balancer.key"),
                        backendTLS: .trustRoots(certificates.directory + "/ca.pem"))))
    }

    @Test func readsAdditionalCertificatesAndChecksEach() throws {
        let certificates = try Certificates()
        let text = config(
            """
                tls:
                  certificate: balancer.pem
                  private_key: balancer.key
                  certificates:
                    - { certificate: node.pem, private_key: node.key }
                    - { certificate: node.pem, private_key: device.key }
                backend_tls: { verify: none }
            """)
        let found = errors(text, in: certificates)
        #expect(found.count == 1)
        #expect(found.first.map { String($0.prefix(30)) } == "b.yaml:11:49: tls private_key ")
        let valid = text.split(separator: "\n").filter { !$0.contains("device.key") }.joined(separator: "\n")
        let configuration = try ConfigFile.parse(valid, file: "b.yaml", baseDirectory: certificates.directory)
        guard case .byPath(let settings) = configuration.listeners.first?.classification else {
            Issue.record("not by-path")
            return
        }
        #expect(
            settings.tls.additional == [
                CertificateFiles(
                    certificate: certificates.directory + "/node.pem", privateKey: certificates.directory + "/node.key")
            ])
    }

    @Test func namesAMissingFileAtItsKey() throws {
        let certificates = try Certificates()
        let text = config(
            """
                tls: { certificate: missing.pem, private_key: balancer.key }
                backend_tls: { verify: none }
            """)
        #expect(
            errors(text, in: certificates) == [
                "b.yaml:6:25: tls certificate '\(certificates.directory)/missing.pem': no such file"
            ])
    }

    @Test func aCertificateThatIsADeviceIsRefusedNotReadForever() throws {
        let certificates = try Certificates()
        let text = config(
            """
                tls: { certificate: /dev/zero, private_key: balancer.key }
                backend_tls: { verify: none }
            """)
        #expect(errors(text, in: certificates) == ["b.yaml:6:25: tls certificate '/dev/zero': not a regular file"])
    }

    @Test func namesAKeyThatIsNotTheCertificates() throws {
        let certificates = try Certificates()
        let text = config(
            """
                tls: { certificate: balancer.pem, private_key: node.key }
                backend_tls: { verify: none }
            """)
        let found = errors(text, in: certificates)
        #expect(found.count == 1)
        #expect(
            found.first?.hasPrefix(
                "b.yaml:6:52: tls private_key '\(certificates.directory)/node.key' does not match certificate"
            ) == true, "\(found)")
    }

    @Test func refusesAWorldReadableKey() throws {
        let certificates = try Certificates()
        try FileManager.default.setAttributes(
            [.posixPermissions: 0o644], ofItemAtPath: certificates.directory + "/balancer.key")
        let text = config(
            """
                tls: { certificate: balancer.pem, private_key: balancer.key }
                backend_tls: { verify: none }
            """)
        #expect(
            errors(text, in: certificates) == [
                "b.yaml:6:52: tls private_key '\(certificates.directory)/balancer.key' is readable by every user (mode 644): chmod 600 it"
            ])
    }

    @Test func saysThatBackendTLSIsRequired() throws {
        let certificates = try Certificates()
        let text = config(
            """
                tls: { certificate: balancer.pem, private_key: balancer.key }
            """)
        #expect(
            errors(text, in: certificates) == [
                "b.yaml:2:5: a by-path listener is missing required key 'backend_tls': say how to reach the nodes over TLS, { verify: none } or { ca: FILE }"
            ])
    }

    @Test func readsTheHTTPLimitsAndKeepAliveSettings() throws {
        let certificates = try Certificates()
        let text = config(
            """
                tls: { certificate: balancer.pem, private_key: balancer.key }
                backend_tls: { verify: none }
                http: { max_header_size: 8192, max_headers: 50, header_timeout: 5s, keep_alive_timeout: 2m,
                        max_requests: 100, node_idle_timeout: 4s, node_idle_connections: 0 }
            """)
        let configuration = try ConfigFile.parse(text, file: "b.yaml", baseDirectory: certificates.directory)
        guard case .byPath(let settings) = configuration.listeners.first?.classification else {
            Issue.record("not by-path")
            return
        }
        var expected = HTTPSettings()
        expected.maxHeaderSize = 8192
        expected.maxHeaders = 50
        expected.headerTimeout = .seconds(5)
        expected.keepAliveTimeout = .seconds(120)
        expected.maxRequests = 100
        expected.nodeIdleTimeout = .seconds(4)
        expected.nodeIdleConnections = 0
        #expect(settings.http == expected)
    }

    @Test func theHTTPDefaultsAreThoseTheDocumentationNames() {
        let defaults = HTTPSettings()
        #expect(defaults.maxHeaderSize == 16384)
        #expect(defaults.maxHeaders == 100)
        #expect(defaults.headerTimeout == .seconds(10))
        #expect(defaults.keepAliveTimeout == .seconds(60))
        #expect(defaults.maxRequests == 1000)
        #expect(defaults.nodeIdleTimeout == .seconds(15))
        #expect(defaults.nodeIdleConnections == 64)
    }

    @Test func namesEveryBadHTTPSettingAtItsPlace() throws {
        let certificates = try Certificates()
        let text = config(
            """
                tls: { certificate: balancer.pem, private_key: balancer.key }
                backend_tls: { verify: none }
                http: { max_header_size: 100, max_headers: lots, header_timeout: 5, max_requests: 0, pipelining: on }
            """)
        #expect(
            errors(text, in: certificates) == [
                "b.yaml:8:30: http max_header_size 100 is out of range 1024-1048576",
                "b.yaml:8:48: http max_headers must be a whole number, not 'lots'",
                "b.yaml:8:70: http header_timeout '5' is not a duration (a number with ms, s, m or h, e.g. 500ms, 2s)",
                "b.yaml:8:87: http max_requests 0 is out of range 1-1000000",
                "b.yaml:8:90: unknown key 'pipelining' in http (expected one of: header_timeout, keep_alive_timeout,"
                    + " max_header_size, max_headers, max_requests, node_idle_connections, node_idle_timeout)",
            ])
    }

    @Test func tlsKeysBelongToByPathOnly() throws {
        let certificates = try Certificates()
        let text = """
            listeners:
              - { name: d, bind: 0.0.0.0:1, backend_port: 1, class: device, paths: { default: device } }
            nodes: [{ id: ums1, host: 10.0.0.11 }]
            """
        #expect(errors(text, in: certificates) == ["b.yaml:2:65: 'paths' only applies to class by-path"])
    }
}
