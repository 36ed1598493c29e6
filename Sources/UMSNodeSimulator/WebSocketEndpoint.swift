import NIOCore
import NIOHTTP1
import NIOWebSocket

/// The WebSocket endpoint of a port: which path upgrades (RFC 6455), what the `101 Switching
/// Protocols` answer tells the client, and the count of the WebSockets open.
struct WebSocketEndpoint: Sendable {
    /// The path IGEL OS 12 devices open their long-lived WebSocket on.
    static let deviceConnectPath = "/device-connector/device/ws-connect"

    /// The largest frame, and the largest message assembled from fragments, a device may send.
    static let maximumFrameBytes = 1 << 16
    static let maximumMessageBytes = 1 << 20

    /// The path that upgrades (any other path is answered as plain HTTP).
    var path: String
    /// The WebSockets open on this endpoint.
    var counter: WebSocketCounter
    /// The extra headers of the upgrade's answer (node, mode, client certificate) for a request.
    var answerHeaders: @Sendable (HTTPRequestHead) -> HTTPHeaders

    /// The upgrader for `configureHTTPServerPipeline(withServerUpgrade:)`.
    func upgrader() -> NIOWebSocketServerUpgrader {
        let path = self.path
        let counter = self.counter
        let answerHeaders = self.answerHeaders
        return NIOWebSocketServerUpgrader(
            maxFrameSize: Self.maximumFrameBytes, automaticErrorHandling: true,
            shouldUpgrade: { channel, head in
                let request = SimHTTPRequest(head: head, body: nil)
                // nil lets the request through as plain HTTP: a 404 elsewhere, a 426 on the path itself.
                guard head.method == .GET, request.path == path else {
                    return channel.eventLoop.makeSucceededFuture(nil)
                }
                return channel.eventLoop.makeSucceededFuture(answerHeaders(head))
            },
            upgradePipelineHandler: { channel, _ in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        NIOWebSocketFrameAggregator(
                            minNonFinalFragmentSize: 1, maxAccumulatedFrameCount: 256,
                            maxAccumulatedFrameSize: Self.maximumMessageBytes))
                    try channel.pipeline.syncOperations.addHandler(WebSocketEchoHandler(counter: counter))
                }
            })
    }
}
