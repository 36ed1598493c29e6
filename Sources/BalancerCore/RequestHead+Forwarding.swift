extension RequestHead {
    /// The header that carries the client certificate to the node, as UMS expects behind a TLS-offloading proxy.
    public static let clientCertificateHeader = "X-SSL-CERT"

    /// The head as a TLS-offloading proxy forwards it: any client-supplied `X-SSL-CERT` removed,
    /// the verified client certificate (PEM) added URL-encoded, and, unless the client upgrades
    /// the connection, `Connection: close`, so a second request on the connection (which the
    /// balancer neither classifies nor rewrites) never reaches the node.
    ///
    /// With `forwardedFor` (the client's IP address: the peer's, or the client a trusted front
    /// balancer named), client-supplied `X-Forwarded-For` and `X-Forwarded-Proto` are replaced by
    /// that address and `https`.
    public func forwarded(clientCertificatePEM: String?, forwardedFor: String? = nil) -> RequestHead {
        var head = self
        head.remove(Self.clientCertificateHeader)
        if let forwardedFor {
            head.remove("X-Forwarded-For")
            head.remove("X-Forwarded-Proto")
            head.fields.append(Field(name: "X-Forwarded-For", value: forwardedFor))
            head.fields.append(Field(name: "X-Forwarded-Proto", value: "https"))
        }
        if let clientCertificatePEM {
            head.fields.append(
                Field(name: Self.clientCertificateHeader, value: Self.urlEncoded(clientCertificatePEM)))
        }
        if !isUpgrade {
            head.remove("Connection")
            head.remove("Keep-Alive")
            head.fields.append(Field(name: "Connection", value: "close"))
        }
        return head
    }

    /// Percent-encodes everything but RFC 3986 unreserved characters (as nginx's `$ssl_client_escaped_cert`).
    public static func urlEncoded(_ text: String) -> String {
        var encoded = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                encoded.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".unicodeScalars)
                encoded.unicodeScalars.append("%")
                encoded.unicodeScalars.append(hex[Int(byte >> 4)])
                encoded.unicodeScalars.append(hex[Int(byte & 0x0F)])
            }
        }
        return encoded
    }
}

/// The answer a `by-path` listener gives a refused request.
public enum RefusalPage {
    /// `HTTP/1.1 503` with `Connection: close` and a one-line, human-readable reason.
    public static func response(text: String) -> [UInt8] {
        let body = text + "\n"
        let head =
            "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n"
            + "Content-Length: \(body.utf8.count)\r\nRetry-After: 30\r\n\r\n"
        return Array((head + body).utf8)
    }

    /// Why nothing can take the request, in words an operator or console user understands.
    public static func text(for refusal: Refusal) -> String {
        let reasons = refusal.reasons.map(\.reason)
        let what = refusal.trafficClass == .console ? "console logins" : "device connections"
        if reasons.isEmpty { return "no UMS servers are configured" }
        if reasons.contains(.consoleFrozen) {
            return "\(what) are frozen while the update runs (update.console: freeze); try again after the update"
        }
        let inUpdate = reasons.filter { $0 == .mode(.update) || $0 == .drainingForReconnect }.count
        if refusal.trafficClass == .console, inUpdate > 0,
            inUpdate + reasons.filter({ $0 == .mode(.installing) }).count
                == reasons.count
        {
            // The counts `/status` shows: servers on the target version, not servers in update mode.
            let counts = refusal.update.map { " (\($0.updated) of \($0.total) servers updated)" } ?? ""
            return "all servers in update mode: \(what) are paused until the update completes\(counts)"
        }
        let detail = refusal.reasons.map { "\($0.node) \($0.reason)" }.joined(separator: ", ")
        return "no UMS server can take \(what) right now: \(detail)"
    }
}
