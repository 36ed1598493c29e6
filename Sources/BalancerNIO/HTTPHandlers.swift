import BalancerCore
import NIOCore
import NIOHTTP1

/// The HTTP/1.1 codecs of `by-path` connections, added and removed by name: an upgraded
/// connection drops them and keeps its bytes. Framing headers are the balancer's to set
/// (`RequestPolicy`, `ResponsePolicy`), so the encoders never add their own.
enum HTTPHandlers {
    static let responseEncoder = "http-response-encoder"
    static let requestDecoder = "http-request-decoder"
    static let requestEncoder = "http-request-encoder"
    static let responseDecoder = "http-response-decoder"

    /// The server side of a client connection, limited to `settings`' header size.
    static func addServerCodec(to pipeline: ChannelPipeline.SynchronousOperations, settings: HTTPSettings) throws {
        var encoding = HTTPResponseEncoder.Configuration()
        encoding.automaticallySetFramingHeaders = false
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderFieldSize = settings.maxHeaderSize
        limits.maxHeaderListSize = settings.maxHeaderSize
        try pipeline.addHandler(HTTPResponseEncoder(configuration: encoding), name: responseEncoder)
        try pipeline.addHandler(
            ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes, limitConfiguration: limits)),
            name: requestDecoder)
    }

    /// Removes the server codec; bytes the decoder holds beyond an upgrade request go to the next
    /// handler. The decoder leaves on a later turn of the loop: the future says when both are gone.
    static func removeServerCodec(from pipeline: ChannelPipeline.SynchronousOperations) -> EventLoopFuture<Void> {
        pipeline.removeHandler(name: responseEncoder).and(pipeline.removeHandler(name: requestDecoder)).map { _ in }
    }

    /// The client side of a node connection; informational answers (`100 Continue`) are passed on.
    static func addClientCodec(to pipeline: ChannelPipeline.SynchronousOperations) throws {
        var encoding = HTTPRequestEncoder.Configuration()
        encoding.automaticallySetFramingHeaders = false
        try pipeline.addHandler(HTTPRequestEncoder(configuration: encoding), name: requestEncoder)
        // After the encoder: the decoder watches the requests written, to know which answers a HEAD.
        try pipeline.addHandler(
            ByteToMessageHandler(
                HTTPResponseDecoder(leftOverBytesStrategy: .forwardBytes, informationalResponseStrategy: .forward)),
            name: responseDecoder)
    }

    /// Removes the client codec; bytes the decoder holds beyond a `101` go to the next handler.
    /// The decoder leaves on a later turn of the loop: the future says when both are gone.
    static func removeClientCodec(from pipeline: ChannelPipeline.SynchronousOperations) -> EventLoopFuture<Void> {
        pipeline.removeHandler(name: requestEncoder).and(pipeline.removeHandler(name: responseDecoder)).map { _ in }
    }
}
