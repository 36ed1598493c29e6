import Hummingbird
import Logging

/// The one place errors become answers: `AdminError`s as their JSON, anything else as a logged 500.
struct ErrorResponseMiddleware: RouterMiddleware {
    typealias Context = AdminRequestContext

    func handle(
        _ request: Request,
        context: AdminRequestContext,
        next: (Request, AdminRequestContext) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as AdminError {
            return error.response
        } catch let error as HTTPError where error.status == .notFound {
            // Hummingbird's router answers an unmatched method or path this way.
            return AdminError.noRoute(method: request.method.rawValue, path: request.uri.path).response
        } catch let error as any HTTPResponseError {
            // Hummingbird's own refusals: a body over the size limit, a malformed request.
            return AdminError.http(error.status, (error as? HTTPError)?.body ?? "").response
        } catch {
            context.logger.error(
                "admin API request failed",
                metadata: ["method": "\(request.method)", "path": "\(request.uri.path)", "error": "\(error)"])
            return AdminError.failed("internal error: \(error)").response
        }
    }
}
