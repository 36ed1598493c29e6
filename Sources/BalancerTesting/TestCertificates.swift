import Foundation

/// A development PKI made by `certs/generate.sh` in a temporary folder, for TLS tests.
public struct TestCertificates: Sendable {
    public let directory: TemporaryDirectory

    /// Runs `certs/generate.sh` (found from the package root) into a fresh folder.
    public static func generate() async throws -> TestCertificates {
        let directory = try TemporaryDirectory()
        let script = packageRoot.appendingPathComponent("certs/generate.sh").path
        let result = try await ProcessHarness.runProgram(at: "/bin/bash", [script, directory.url.path])
        guard result.status == 0 else { throw TestKitError("certs/generate.sh failed: \(result.output)") }
        return TestCertificates(directory: directory)
    }

    /// The path of one generated file: `ca.pem`, `node.key`, ...
    public func path(_ name: String) -> String {
        directory.url.appendingPathComponent(name).path
    }

    /// The package's root folder (where Package.swift is), from this source file's location.
    public static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }
}
