import Foundation
import Testing
import UMSNodeSimulator

@Suite("Client certificate header", .timeLimit(.minutes(1)))
struct ClientCertificateTests {
    /// The device certificate `certs/generate.sh` writes, as PEM.
    static func devicePEM() throws -> String {
        let directory = NSTemporaryDirectory() + "sim-cert-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [root.appendingPathComponent("certs/generate.sh").path, directory]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return try String(contentsOfFile: directory + "/device.pem", encoding: .utf8)
    }

    @Test func namesTheSubjectOfAURLEncodedPEM() throws {
        let header = try #require(try Self.devicePEM().addingPercentEncoding(withAllowedCharacters: .alphanumerics))
        #expect(clientCertificateSubject(fromHeader: header) == "CN=device-00E0C5000001,O=IGEL OS 12 devices")
    }

    @Test func ignoresLineBreakStyle() throws {
        let folded = try Self.devicePEM().replacingOccurrences(of: "\n", with: " ")
        #expect(clientCertificateSubject(fromHeader: folded) == "CN=device-00E0C5000001,O=IGEL OS 12 devices")
    }

    @Test(arguments: [
        "", "abc", "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----",
        "-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n",
    ])
    func returnsNilForWhatItCannotParse(_ header: String) {
        #expect(clientCertificateSubject(fromHeader: header) == nil)
    }
}
