import BalancerCore
import BalancerDataPath
import NIOCore
import NIOHTTP2
import NIOSSL
import NIOTLS

extension PathConnection {
    /// Sets up an accepted `by-path` client channel: the PROXY header reader (`proxy_protocol`),
    /// TLS, the wire handler, then, once ALPN has spoken, the HTTP handlers. `withoutTLS`: the
    /// channel carries plain text (tests on embedded channels, which report the handshake themselves).
    @discardableResult
    static func setUp(
        _ channel: any Channel, listener: NIOListenerContext, settings: PathListenerSettings, listenerKey: Int,
        registry: ConnectionRegistry, sweeper: RelaySweeper?, withoutTLS: Bool = false
    ) throws -> PathConnection {
        let connection = PathConnection(
            channel: channel, listener: listener, settings: settings, listenerKey: listenerKey, registry: registry,
            sweeper: sweeper)
        connection.certificatesMissing = listener.tls == nil && !withoutTLS
        let pipeline = channel.pipeline.syncOperations
        // Before TLS: a front balancer's PROXY header comes first on the wire.
        if listener.shared.configuration.proxyProtocolFrom != nil {
            try pipeline.addHandler(ProxyHeaderReader(connection: connection))
        }
        if let tls = listener.tls, !withoutTLS {
            try pipeline.addHandler(ClientSilenceWatch(connection: connection))
            try pipeline.addHandler(NIOSSLServerHandler(context: tls.server))
        }
        let wire = ClientWire(connection: connection)
        connection.attach(wire: wire)
        try pipeline.addHandler(wire)
        try pipeline.addHandler(
            ApplicationProtocolNegotiationHandler { result, channel in
                channel.eventLoop.makeCompletedFuture {
                    try connection.speak(result, on: channel.pipeline.syncOperations)
                }
            })
        // Handlers gate the reads (a request's body waits for its node): the channel reads on its own otherwise.
        try channel.syncOptions?.setOption(.autoRead, value: true)
        return connection
    }

    /// Adds the handlers of the protocol the client and the balancer agreed on.
    func speak(_ result: ALPNResult, on pipeline: ChannelPipeline.SynchronousOperations) throws {
        if case .negotiated("h2") = result {
            try speakHTTP2(on: pipeline)
            return
        }
        try HTTPHandlers.addServerCodec(to: pipeline, settings: settings.http)
        try pipeline.addHandler(ClientHTTPHandler(connection: self))
    }

    /// HTTP/2: each stream gets NIOHTTP2's HTTP/1 codec and a handler of its own, so a stream is
    /// a request like any other. The connection-management handler sends the GOAWAYs of a
    /// graceful close (shutdown, `max_requests`) and closes once the last stream is done.
    private func speakHTTP2(on pipeline: ChannelPipeline.SynchronousOperations) throws {
        isHTTP2 = true
        let management = NIOHTTP2ServerConnectionManagementHandler(
            eventLoop: pipeline.eventLoop,
            configuration: .init(
                maxIdleTime: nil, maxAge: nil, maxGraceTime: TimeAmount(settings.http.keepAliveTimeout), keepalive: nil
            ))
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: 100),
            HTTP2Setting(parameter: .maxHeaderListSize, value: settings.http.maxHeaderSize),
        ]
        let handle = PathConnectionHandle(connection: self)
        _ = try pipeline.configureHTTP2Pipeline(
            mode: .server, connectionConfiguration: connection, streamConfiguration: .init(),
            streamDelegate: management.http2StreamDelegate
        ) { stream in
            stream.eventLoop.makeCompletedFuture {
                let id = try stream.syncOptions?.getOption(HTTP2StreamChannelOptions.streamID)
                let sync = stream.pipeline.syncOperations
                try sync.addHandler(HTTP2FramePayloadToHTTP1ServerCodec())
                try sync.addHandler(ClientHTTPHandler(connection: handle.connection, stream: id.map { Int($0) } ?? 0))
            }
        }
        try pipeline.addHandler(management)
    }
}
