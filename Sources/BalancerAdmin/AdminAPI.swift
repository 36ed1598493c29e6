import BalancerCore
import BalancerNIO
import BalancerStore
import Foundation
import Hummingbird
import Prometheus

/// The admin HTTP API's routes over one running balancer. `router(tokens:)` is the composition that
/// `AdminService` serves.
public struct AdminAPI: Sendable {
    let balancer: Balancer
    let store: StateStore?
    let metrics: PrometheusCollectorRegistry?
    let reload: @Sendable (_ actor: String) async -> ReloadResult

    /// Routes over `balancer`; `store` serves `/events`, `metrics` is the registry swift-metrics
    /// reports into (nil: only the gauges made from status), `reload` is what SIGHUP runs too,
    /// with who asked.
    public init(
        balancer: Balancer,
        store: StateStore?,
        metrics: PrometheusCollectorRegistry?,
        reload: @escaping @Sendable (_ actor: String) async -> ReloadResult
    ) {
        self.balancer = balancer
        self.store = store
        self.metrics = metrics
        self.reload = reload
    }

    /// Every route, behind the error mapping and then the token check (401 before 404), checking
    /// the token `tokens` holds at the time of each request.
    public func router(tokens: AdminTokens) -> Router<AdminRequestContext> {
        let router = Router(context: AdminRequestContext.self)
        router.add(middleware: ErrorResponseMiddleware())
        router.add(middleware: BearerAuthMiddleware(tokens: tokens))
        router.get("/") { _, _ in DashboardPage.response }
        router.get("/healthz") { _, _ in HealthCheck.response(serving: balancer.isServing) }
        router.get("/status") { _, _ in try AdminJSON.response(await StatusDocument(of: balancer)) }
        router.get("/metrics") { _, _ in await metricsResponse() }
        router.get("/events") { request, _ in
            let query = request.uri.queryParameters
            return try AdminJSON.response(
                try await events(limit: query["limit"].map(String.init), after: query["after"].map(String.init)))
        }
        router.post("/reload") { _, context in
            try AdminJSON.response(try await reloadConfiguration(actor: context.actor))
        }
        router.post("/nodes/{id}/drain") { _, context in try await setAdmin(.draining, context) }
        router.post("/nodes/{id}/resume") { _, context in try await setAdmin(.active, context) }
        router.post("/nodes/{id}/maintenance") { _, context in try await setAdmin(.maintenance, context) }
        router.put("/nodes/{id}/mode") { request, context in try await overrideMode(request, context) }
        router.post("/update/retry-reconnect") { _, context in try await retryReconnect(actor: context.actor) }
        router.post("/update/end") { _, context in try await endUpdateRun(actor: context.actor) }
        router.get("/update/plan") { _, _ in try AdminJSON.response(PlanDocument(of: await balancer.updatePlan())) }
        router.post("/update/start") { request, context in try await startUpdate(request, actor: context.actor) }
        router.post("/update/pause") { _, context in try await driveRequest(.pause, actor: context.actor) }
        router.post("/update/resume") { _, context in try await driveRequest(.resume, actor: context.actor) }
        router.post("/update/abort") { _, context in try await driveRequest(.abort, actor: context.actor) }
        return router
    }

    // MARK: - Reading

    private func metricsResponse() async -> Response {
        var text = SnapshotMetrics.render(await StatusDocument(of: balancer))
        metrics?.emit(into: &text)
        return Response(
            status: .ok,
            headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: text)))
    }

    private func events(limit limitText: String?, after afterText: String?) async throws -> EventsDocument {
        let limit = try limitText.map { text in
            guard let limit = Int(text), (1...1000).contains(limit) else {
                throw AdminError.badRequest("limit must be a number from 1 to 1000, not '\(text)'")
            }
            return limit
        }
        let after = try afterText.map { text in
            guard let after = Int64(text), after >= 0 else {
                throw AdminError.badRequest("after must be an event id (a number from 0), not '\(text)'")
            }
            return after
        }
        guard let store else { return .withoutStore }
        do {
            return EventsDocument(try await store.events(limit: limit ?? 100, after: after))
        } catch {
            throw AdminError.failed("cannot read the journal from \(store.path): \(error)")
        }
    }

    // MARK: - Changing

    private func reloadConfiguration(actor: String) async throws -> StatusDocument.Config {
        balancer.journal.record(.reload, actor: actor, "reload requested through the admin API")
        if case .rejected(let error) = await reload(actor) { throw AdminError.reloadRejected(error) }
        let after = balancer.reloadStatus
        return StatusDocument.Config(
            generation: after.generation,
            lastReload: .init(ok: after.lastReload.ok, at: after.lastReload.at, error: after.lastReload.error))
    }

    private func setAdmin(_ admin: AdminState, _ context: AdminRequestContext) async throws -> Response {
        let node = try nodeID(context)
        guard await balancer.setAdminState(admin, of: node, actor: context.actor) else {
            throw AdminError.unknownNode(node)
        }
        return try AdminJSON.response(try nodeDocument(node))
    }

    private func overrideMode(_ request: Request, _ context: AdminRequestContext) async throws -> Response {
        let node = try nodeID(context)
        guard balancer.directory.status(of: node) != nil else { throw AdminError.unknownNode(node) }
        let body = try await request.body.collect(upTo: 4096)
        let mode = try ModeOverrideBody.parse(body)
        guard await balancer.overrideMode(mode, of: node, actor: context.actor) else {
            throw AdminError.unknownNode(node)
        }
        return try AdminJSON.response(try nodeDocument(node))
    }

    private func retryReconnect(actor: String) async throws -> Response {
        guard await balancer.retryReconnect(actor: actor) else {
            let run = await balancer.updateRun()
            throw AdminError.conflict(
                "the update run is \(run.state.rawValue), not stalled: there is no reconnect to retry")
        }
        return try AdminJSON.response(StatusDocument.Update(of: await balancer.updateRun()))
    }

    private func endUpdateRun(actor: String) async throws -> Response {
        let run: UpdateRun
        do {
            run = try await balancer.endUpdateRun(actor: actor)
        } catch {
            throw AdminError.conflict(error.description)
        }
        return try AdminJSON.response(StatusDocument.Update(of: run))
    }

    // MARK: - Helpers

    private func nodeID(_ context: AdminRequestContext) throws -> NodeID {
        guard let id = context.parameters.get("id") else { throw AdminError.badRequest("no node id in the path") }
        return id
    }

    private func nodeDocument(_ node: NodeID) throws -> StatusDocument.Node {
        guard let entry = balancer.directory.snapshot().first(where: { $0.status.id == node }) else {
            throw AdminError.unknownNode(node)
        }
        return StatusDocument.Node(
            of: entry.status, connections: entry.connections, override: balancer.directory.modeOverride(of: node))
    }
}
