import Foundation

/// Summarizes the client certificate a TLS-terminating proxy forwarded in `X-SSL-CERT`
/// (a URL-encoded PEM, as nginx's `$ssl_client_escaped_cert`); nil if it cannot be parsed.
///
/// For now the summary names the certificate's DER size; a later task makes it return the subject.
public func clientCertificateSubject(fromHeader header: String) -> String? {
    let decoded = header.removingPercentEncoding ?? header
    let begin = "-----BEGIN CERTIFICATE-----"
    let end = "-----END CERTIFICATE-----"
    guard let start = decoded.range(of: begin),
        let stop = decoded.range(of: end, range: start.upperBound..<decoded.endIndex)
    else { return nil }
    // Proxies fold the PEM's line breaks into spaces, tabs or nothing: drop all whitespace.
    let base64 = decoded[start.upperBound..<stop.lowerBound].filter { !$0.isWhitespace }
    guard let der = Data(base64Encoded: String(base64)), der.first == 0x30 else { return nil }
    return "X.509 certificate (\(der.count) bytes DER)"
}
