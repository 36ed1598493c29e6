import BalancerCore
import NIOSSL

/// Sorts a failed TLS handshake by BoringSSL's reason code, so the same fault gets the same
/// `reason` on every listener. NIOSSL keeps the packed code private and prints it first in an
/// error's description (`Error: 268435612 error:1000009c:...`); that number, not the wording
/// after it, is what is read here.
enum TLSHandshakeError {
    /// The handshake failure `error` stands for.
    static func failure(_ error: any Error) -> HandshakeFailure {
        let detail = "\(error)"
        guard case NIOSSLError.handshakeFailed(.sslError(let stack)) = error else { return .tls(detail) }
        let reasons = stack.compactMap(reasonCode)
        if reasons.contains(where: notTLS.contains) { return .notTLS("TLS handshake failed: \(detail)") }
        if reasons.contains(where: clientCertificate.contains) { return .clientCertificate(detail) }
        return .tls(detail)
    }

    /// The reason of one BoringSSL error (the low 12 bits of its packed code) from library SSL.
    private static func reasonCode(_ error: BoringSSLInternalError) -> UInt32? {
        let text = error.description
        guard text.hasPrefix("Error: ") else { return nil }
        guard let packed = UInt32(text.dropFirst(7).prefix(while: \.isNumber)) else { return nil }
        guard packed >> 24 == librarySSL else { return nil }
        return packed & 0xFFF
    }

    // From BoringSSL's ssl.h.
    private static let librarySSL: UInt32 = 16
    /// SSL_R_HTTPS_PROXY_REQUEST, SSL_R_HTTP_REQUEST, SSL_R_WRONG_VERSION_NUMBER.
    private static let notTLS: Set<UInt32> = [155, 156, 247]
    /// SSL_R_CERTIFICATE_VERIFY_FAILED, SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE,
    /// SSL_R_SSLV3_ALERT_BAD_CERTIFICATE, SSL_R_TLSV1_ALERT_UNKNOWN_CA,
    /// SSL_R_TLSV1_ALERT_CERTIFICATE_REQUIRED.
    private static let clientCertificate: Set<UInt32> = [125, 192, 1042, 1048, 1116]
}
