import Foundation
import Testing
import UMSNodeSimulator

@Suite("Client certificate header", .timeLimit(.minutes(1)))
struct ClientCertificateTests {
    // A syntactically valid DER prefix is all the current summary needs.
    let pem = "-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n"

    @Test func summarizesAURLEncodedPEM() throws {
        let header = try #require(pem.addingPercentEncoding(withAllowedCharacters: .alphanumerics))
        #expect(clientCertificateSubject(fromHeader: header) == "X.509 certificate (4 bytes DER)")
    }

    @Test func ignoresLineBreakStyle() {
        let folded = pem.replacingOccurrences(of: "\n", with: " ")
        #expect(clientCertificateSubject(fromHeader: folded) == "X.509 certificate (4 bytes DER)")
    }

    @Test(arguments: ["", "abc", "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----"])
    func returnsNilForWhatItCannotParse(_ header: String) {
        #expect(clientCertificateSubject(fromHeader: header) == nil)
    }
}
