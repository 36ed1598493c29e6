import BalancerTesting
import Foundation
import Testing

/// What an operator on an installed host meets first: `--version`, and where the file is looked for.
@Suite(.timeLimit(.minutes(1)))
struct CLIHygieneTests {
    static let installedConfig = "/etc/ums-balancer/ums-balancer.yaml"

    @Test func versionNamesTheReleaseAndTheCommitBuilt() async throws {
        let result = try await ProcessHarness.run("ums-balancer", ["--version"])
        #expect(result.status == 0)
        let git = try await ProcessHarness.runProgram(
            at: "/usr/bin/git", ["-C", TestCertificates.packageRoot.path, "rev-parse", "--short=12", "HEAD"])
        let head = git.output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(git.status == 0, "the tests run from a git checkout: \(git.output)")
        // The build may be of a modified tree, but of this commit.
        #expect(result.output.hasPrefix("0.9.0 (commit \(head)"), "\(result.output) against HEAD \(head)")
    }

    @Test func withoutConfigTheCheckoutFileIsReadAndTheErrorNamesBothPlaces() async throws {
        #expect(
            !FileManager.default.fileExists(atPath: Self.installedConfig),
            "this test needs a machine without \(Self.installedConfig)")
        let dir = try TemporaryDirectory()
        defer { dir.remove() }

        let missing = try await ProcessHarness("ums-balancer", ["check-config"], workingDirectory: dir.url)
        #expect(try await missing.waitForExit() == 1)
        #expect(
            missing.output.contains(
                "config/ums-balancer.yaml:1:1: no such file, nor \(Self.installedConfig): pass --config FILE"),
            "\(missing.output)")
        let status = try await ProcessHarness("ums-balancer", ["status"], workingDirectory: dir.url)
        #expect(try await status.waitForExit() != 0)
        #expect(status.output.contains(Self.installedConfig), "\(status.output)")

        try FileManager.default.createDirectory(
            at: dir.url.appending(path: "config"), withIntermediateDirectories: true)
        _ = try dir.write(
            "config/ums-balancer.yaml",
            """
            listeners: [{ name: devices, bind: 127.0.0.1:30001, backend_port: 30001, class: device }]
            nodes: [{ id: ums1, host: 127.0.0.11 }]
            """)
        let found = try await ProcessHarness("ums-balancer", ["check-config"], workingDirectory: dir.url)
        #expect(try await found.waitForExit() == 0, "\(found.output)")
        #expect(found.output.contains("config/ums-balancer.yaml: OK"), "\(found.output)")
    }
}
