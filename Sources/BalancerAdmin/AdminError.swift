import BalancerCore
import Foundation
import Hummingbird

/// What the admin API refuses; `ErrorResponseMiddleware` turns each into one JSON answer.
public enum AdminError: Error, Equatable, CustomStringConvertible {
    /// No `Authorization: Bearer` header, or the wrong token.
    case unauthorized
    /// No node with this id is configured.
    case unknownNode(NodeID)
    /// No route for this method and path.
    case noRoute(method: String, path: String)
    /// The request is malformed: a bad query value or body.
    case badRequest(String)
    /// The operation does not apply now (a retry when the update run is not stalled).
    case conflict(String)
    /// The new configuration was rejected; the running one stays.
    case reloadRejected(String)
    /// Something on the balancer's side failed (the state database, say).
    case failed(String)
    /// Refused by the HTTP layer before a route ran (a body over the size limit, say).
    case http(HTTPResponse.Status, String)

    /// The HTTP status of the answer.
    public var status: HTTPResponse.Status {
        switch self {
        case .unauthorized: .unauthorized
        case .unknownNode, .noRoute: .notFound
        case .badRequest: .badRequest
        case .conflict: .conflict
        case .reloadRejected: .unprocessableContent
        case .failed: .internalServerError
        case .http(let status, _): status
        }
    }

    public var description: String {
        switch self {
        case .unauthorized: "missing or wrong admin token (send Authorization: Bearer TOKEN)"
        case .unknownNode(let node): "unknown node '\(node)'"
        case .noRoute(let method, let path): "no route \(method) \(path)"
        case .badRequest(let reason): reason
        case .conflict(let reason): reason
        case .reloadRejected(let reason): "reload rejected, the running configuration stays: \(reason)"
        case .failed(let reason): reason
        case .http(let status, let reason): reason.isEmpty ? status.reasonPhrase : reason
        }
    }

    /// `{"error": "..."}` with the status; a 401 also names the scheme it expects.
    var response: Response {
        var headers: HTTPFields = [.contentType: "application/json; charset=utf-8"]
        if self == .unauthorized { headers[.wwwAuthenticate] = "Bearer realm=\"ums-balancer\"" }
        let body = (try? AdminJSON.encode(["error": description])) ?? ByteBuffer(string: "{}")
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: body))
    }
}
