import BalancerTesting
import Foundation
import Testing

/// The systemd units and the keepalived example we ship are what the tools accept, without a
/// single complaint: a typo there only shows on an operator's host otherwise.
@Suite(.timeLimit(.minutes(1)))
struct ShippedUnitFilesTests {
    static let config = TestCertificates.packageRoot.appendingPathComponent("config")
    static let balancer = ProcessHarness.productsDirectory.appendingPathComponent("ums-balancer").path

    /// `file` from config/ with the installed binary's path replaced by the one built here.
    func shipped(_ file: String, into dir: TemporaryDirectory, replacing more: [(String, String)] = []) throws -> String
    {
        var text = try String(contentsOf: Self.config.appendingPathComponent(file), encoding: .utf8)
        text = text.replacingOccurrences(of: "/usr/local/bin/ums-balancer", with: Self.balancer)
        for (old, new) in more {
            #expect(text.contains(old), "\(file) no longer has '\(old)'")
            text = text.replacingOccurrences(of: old, with: new)
        }
        return try dir.write(file, text)
    }

    @Test func systemdAnalyzeVerifiesTheServiceAndSocketUnits() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let units = try ["ums-balancer.service", "ums-balancer-devices.socket"].map { try shipped($0, into: dir) }
        let verify = try await ProcessHarness.runProgram(at: "/usr/bin/systemd-analyze", ["verify"] + units)
        #expect(verify.status == 0, "\(verify.output)")
        // systemd-analyze reports a bad value as a warning and still exits 0.
        #expect(verify.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(verify.output)")
    }

    @Test func keepalivedAcceptsTheExample() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        // The test machine has no ums-balancer user for the track script to run as.
        let example = try shipped(
            "keepalived.conf.example", into: dir, replacing: [("script_user ums-balancer", "script_user root")])
        let check = try await ProcessHarness.runProgram(at: "/usr/sbin/keepalived", ["-t", "-f", example])
        #expect(check.status == 0, "\(check.output)")
        #expect(check.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(check.output)")
    }
}
