import Foundation
import NIOCore
import NIOHTTP1

/// A complete HTTP request as the simulator's routes see it.
struct SimHTTPRequest: Sendable {
    var method: HTTPMethod
    var path: String
    var query: [String: String]
    var headers: HTTPHeaders
    var body: ByteBuffer?

    init(head: HTTPRequestHead, body: ByteBuffer?) {
        let components = URLComponents(string: head.uri)
        self.method = head.method
        self.path = components?.percentEncodedPath ?? head.uri
        var query: [String: String] = [:]
        for item in components?.queryItems ?? [] where query[item.name] == nil {
            query[item.name] = item.value ?? ""
        }
        self.query = query
        self.headers = head.headers
        self.body = body
    }

    /// The path's non-empty segments, percent-decoded.
    var pathSegments: [String] {
        path.split(separator: "/").map { String($0).removingPercentEncoding ?? String($0) }
    }
}

/// A JSON answer: a status and the encoded body.
struct SimHTTPResponse: Sendable {
    var status: HTTPResponseStatus
    var body: [UInt8]
    /// The time the `Date` header gives (the node's clock; now when nil).
    var date: Date? = nil

    /// Encodes a JSON object (built from dictionaries, arrays, strings, numbers, NSNull).
    static func json(_ status: HTTPResponseStatus, _ object: [String: Any]) -> SimHTTPResponse {
        let data =
            (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
            ?? Data(#"{"error":"response could not be encoded"}"#.utf8)
        return SimHTTPResponse(status: status, body: Array(data))
    }

    /// A JSON error such as `{"error":"not found"}`.
    static func error(_ status: HTTPResponseStatus, _ message: String) -> SimHTTPResponse {
        json(status, ["error": message])
    }
}

extension Date {
    /// The IMF-fixdate of an HTTP `Date` header: "Sun, 06 Nov 1994 08:49:37 GMT".
    var httpDate: String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.string(from: self)
    }
}

/// Answers one request; runs off the event loop.
typealias HTTPResponder = @Sendable (SimHTTPRequest) async -> SimHTTPResponse
