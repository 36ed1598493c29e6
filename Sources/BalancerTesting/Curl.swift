import Foundation

/// The `curl` command line client (Debian package `curl`), for tests that need a real HTTP
/// client: keep-alive over several URLs in one invocation, HTTP/2, uploads and downloads.
public enum Curl {
    /// One transfer of an invocation: its status, how many new connections it opened (0: it
    /// reused one), the HTTP version used, and its body (when not written to a file).
    public struct Transfer: Sendable {
        public var status: Int
        public var connects: Int
        public var httpVersion: String
        /// Body bytes received.
        public var downloaded: Int
        public var body: String

        /// The body as a JSON object, if it is one.
        public var json: [String: Any]? {
            (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any]
        }
    }

    public static let path = "/usr/bin/curl"
    private static let marker = "@@curl@@"

    /// Runs curl with `arguments` (URLs and options; `--next` separates per-URL options) and
    /// returns each transfer. Throws when curl is missing or fails.
    public static func run(_ arguments: [String]) async throws -> [Transfer] {
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw TestKitError("curl is not installed: install the Debian package 'curl'")
        }
        // The write-out applies to every URL, also after --next.
        var withWriteOut: [String] = []
        let writeOut = ["-w", "\n\(marker) %{http_code} %{num_connects} %{http_version} %{size_download}\n"]
        withWriteOut += writeOut
        for argument in arguments {
            withWriteOut.append(argument)
            if argument == "--next" { withWriteOut += writeOut }
        }
        let result = try await ProcessHarness.runProgram(at: path, ["-sS", "--max-time", "30"] + withWriteOut)
        guard result.status == 0 else { throw TestKitError("curl exited \(result.status): \(result.output)") }
        var transfers: [Transfer] = []
        var body: [Substring] = []
        for line in result.output.split(separator: "\n", omittingEmptySubsequences: false) {
            guard line.hasPrefix(marker) else {
                body.append(line)
                continue
            }
            let fields = line.split(separator: " ")
            guard fields.count == 5, let status = Int(fields[1]), let connects = Int(fields[2]),
                let downloaded = Int(fields[4])
            else {
                throw TestKitError("cannot read curl's write-out: \(line)")
            }
            transfers.append(
                Transfer(
                    status: status, connects: connects, httpVersion: String(fields[3]), downloaded: downloaded,
                    body: body.joined(separator: "\n")))
            body = []
        }
        return transfers
    }
}
