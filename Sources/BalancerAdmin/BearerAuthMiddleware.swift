import Foundation
import Hummingbird

/// Checks the bearer token before routing, so a wrong token gets 401 whatever the path; only
/// `GET /` (the dashboard shell) and `GET /healthz` (200 or 503), which hold no data, are open. Without a token, everything is open
/// (a loopback bind only: `AdminToken.load` refuses anything else).
struct BearerAuthMiddleware: RouterMiddleware {
    typealias Context = AdminRequestContext

    let tokens: AdminTokens

    func handle(
        _ request: Request,
        context: AdminRequestContext,
        next: (Request, AdminRequestContext) async throws -> Response
    ) async throws -> Response {
        guard let token = tokens.token, !Self.isOpen(request) else { return try await next(request, context) }
        guard let header = request.headers[.authorization], header.count > 7,
            header.prefix(7).lowercased() == "bearer ",
            token.matches(header.dropFirst(7).trimmingCharacters(in: .whitespaces))
        else {
            context.logger.notice(
                "admin API: refused a request without the right token",
                metadata: ["client": "\(context.actor)", "path": "\(request.uri.path)"])
            throw AdminError.unauthorized
        }
        return try await next(request, context)
    }

    private static func isOpen(_ request: Request) -> Bool {
        request.method == .get && (request.uri.path == "/" || request.uri.path == HealthCheck.path)
    }
}
