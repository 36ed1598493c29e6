import NIOHTTP1

extension SimulatedNode {
    /// The header naming the node that accepted a WebSocket.
    public static let webSocketNodeHeader = "X-UMS-Node"
    /// The header with the node's mode when it accepted a WebSocket (`normal` or `update`).
    public static let webSocketModeHeader = "X-UMS-Mode"
    /// The header with the subject of the client certificate a TLS-offloading proxy forwarded in
    /// `X-SSL-CERT`; absent when none came (or it could not be read).
    public static let webSocketClientCertificateHeader = "X-UMS-Client-Cert"

    /// What the `101 Switching Protocols` answer tells the device: which node took the
    /// WebSocket, in which mode, and which client certificate it saw. In headers, so that the
    /// messages on the WebSocket are nothing but the echoes.
    func webSocketAnswerHeaders(_ head: HTTPRequestHead) -> HTTPHeaders {
        var headers = HTTPHeaders()
        headers.add(name: Self.webSocketNodeHeader, value: configuration.id)
        // The mode it serves in, as a profile answer says it (the status may still show the mode it
        // is coming from while its ports reopen).
        headers.add(name: Self.webSocketModeHeader, value: runtime.withLock { $0.machine.mode.rawValue })
        if let subject = head.headers.first(name: "X-SSL-CERT").flatMap(clientCertificateSubject(fromHeader:)) {
            headers.add(name: Self.webSocketClientCertificateHeader, value: subject)
        }
        return headers
    }
}
