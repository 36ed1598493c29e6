import Foundation
import NIOSSL

/// The subject of the client certificate a TLS-terminating proxy forwarded in `X-SSL-CERT`
/// (a URL-encoded PEM, as nginx's `$ssl_client_escaped_cert`), e.g.
/// `CN=device-00E0C5000001,O=IGEL OS 12 devices`; nil if it cannot be parsed.
public func clientCertificateSubject(fromHeader header: String) -> String? {
    let decoded = header.removingPercentEncoding ?? header
    let begin = "-----BEGIN CERTIFICATE-----"
    let end = "-----END CERTIFICATE-----"
    guard let start = decoded.range(of: begin),
        let stop = decoded.range(of: end, range: start.upperBound..<decoded.endIndex)
    else { return nil }
    // Proxies fold the PEM's line breaks into spaces, tabs or nothing: drop all whitespace.
    let base64 = decoded[start.upperBound..<stop.lowerBound].filter { !$0.isWhitespace }
    guard let der = Data(base64Encoded: String(base64)), der.first == 0x30,
        let certificate = try? NIOSSLCertificate(bytes: Array(der), format: .der)
    else { return nil }
    // Most specific first, as RFC 4514 writes a distinguished name.
    let names = certificate.subjectName.reversed().map { "\(shortName($0.type))=\($0.value)" }
    return names.isEmpty ? "X.509 certificate (\(der.count) bytes DER)" : names.joined(separator: ",")
}

private func shortName(_ type: SSLCertificateNameType) -> String {
    let names: [(SSLCertificateNameType, String)] = [
        (.commonName, "CN"), (.organization, "O"), (.organizationalUnit, "OU"), (.country, "C"), (.state, "ST"),
        (.city, "L"), (.emailAddress, "emailAddress"), (.userId, "UID"),
    ]
    return names.first { $0.0 == type }?.1 ?? "?"
}
