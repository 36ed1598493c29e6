import AsyncHTTPClient
import BalancerAdmin
import BalancerApp
import BalancerCore
import BalancerNIO
import BalancerStore
import BalancerTesting
import Foundation
import Logging
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle

/// A simulated three-node cluster, a balancer in front of it and its admin API, composed by
/// `BalancerApp` as `ums-balancer run` composes them, with a state database in a temporary folder.
final class AdminHarness: Sendable {
    static let token = "test-token-0123456789"

    let cluster: SimulatedCluster
    let balancer: Balancer
    let baseURL: String
    let folder: TemporaryDirectory
    let metrics = PrometheusCollectorRegistry()
    private let app: BalancerApp
    private let task: Task<Void, any Error>

    /// An answer: status, content type and body.
    struct Answer {
        var status: Int
        var contentType: String
        var body: String

        var json: [String: Any] {
            get throws {
                guard let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else {
                    throw TestKitError("not a JSON object: \(body)")
                }
                return object
            }
        }

        func decode<Document: Decodable>(_ type: Document.Type) throws -> Document {
            try JSONDecoder.admin.decode(Document.self, from: Data(body.utf8))
        }
    }

    /// Starts everything; `reload` stands in for SIGHUP's `reload(_:from:logger:)`, `prepare` brings
    /// the cluster to where a test needs it before the balancer starts, `configure` adjusts the
    /// balancer's configuration.
    init(
        withStore: Bool = true,
        initialRun: UpdateRun? = nil,
        reload: @escaping @Sendable (Balancer) async -> Void = { _ = try? await $0.reload(to: $0.configuration) },
        prepare: (SimulatedCluster) async throws -> Void = { _ in },
        configure: (inout BalancerConfiguration) -> Void = { _ in }
    ) async throws {
        cluster = try await SimulatedCluster.start(count: 3)
        do {
            try await prepare(cluster)
        } catch {
            await cluster.stop()
            throw error
        }
        folder = try TemporaryDirectory()
        let store = withStore ? try StateStore(path: folder.url.appendingPathComponent("state.sqlite").path) : nil
        var configuration = BalancerConfiguration(
            listeners: [
                ListenerConfiguration(
                    name: "devices", bind: Endpoint(host: "127.0.0.1", port: try FreePort.pick()),
                    backendPort: cluster.devicePort, classification: .fixed(.device))
            ],
            nodes: cluster.nodes.map { NodeConfiguration(id: $0.configuration.id, host: $0.configuration.host) })
        configuration.threads = 2
        configuration.shutdownGrace = .seconds(2)
        configuration.health.interval = .milliseconds(100)
        // Generous: on a loaded machine a 500 ms probe can time out three times in a row.
        configuration.health.timeout = .seconds(2)
        configuration.health.rise = 1
        configuration.status = StatusProbeSettings(action: .url(cluster.statusURL))
        let settings = AdminSettings(
            bind: Endpoint(host: "127.0.0.1", port: try FreePort.pick()),
            tokenFile: try folder.write("admin.token", "  \(Self.token)\n"))
        configuration.admin = settings
        configure(&configuration)

        let listening = AsyncStream.makeStream(of: SocketAddress.self)
        var options = BalancerApp.Options(logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        options.store = store
        options.initialRun = initialRun
        options.metrics = metrics
        options.reload = { balancer in
            // The test's reload, told apart by whether it made a new generation.
            let before = balancer.reloadStatus.generation
            await reload(balancer)
            let after = balancer.reloadStatus
            return after.generation > before
                ? .applied(generation: after.generation) : .rejected(after.lastReload.error ?? "rejected")
        }
        options.adminListening = { listening.continuation.yield($0) }
        app = try await BalancerApp.build(configuration: configuration, options: options)
        balancer = app.balancer
        task = Task { [app] in
            // A service that fails to start ends the stream, so the wait below cannot hang.
            defer { listening.continuation.finish() }
            try await app.run()
        }
        var iterator = listening.stream.makeAsyncIterator()
        guard let address = await iterator.next() else {
            let failure = await task.result
            throw TestKitError("the admin API never listened: \(failure)")
        }
        baseURL = "http://127.0.0.1:\(address.port!)"
        try await balancer.listening.get()
    }

    /// One request; `token` nil sends no Authorization header.
    func request(
        _ method: String, _ path: String, token: String? = AdminHarness.token, body: String? = nil
    ) async throws -> Answer {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method =
            switch method {
            case "POST": .POST
            case "PUT": .PUT
            case "DELETE": .DELETE
            default: .GET
            }
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 8 * 1024 * 1024)
        return Answer(
            status: Int(response.status.code), contentType: response.headers.first(name: "Content-Type") ?? "",
            body: String(buffer: bytes))
    }

    /// GET with the token, expecting 200 and decoding the body.
    func get<Document: Decodable>(_ path: String, as type: Document.Type) async throws -> Document {
        let answer = try await request("GET", path)
        guard answer.status == 200 else { throw TestKitError("GET \(path): \(answer.status) \(answer.body)") }
        return try answer.decode(type)
    }

    /// Waits until the journal holds an event matching `condition` (it is written in batches).
    func waitForEvent(
        _ what: String, timeout: Duration = .seconds(10), _ condition: (EventsDocument.Event) -> Bool
    ) async throws -> EventsDocument.Event {
        let deadline = ContinuousClock.now + timeout
        while true {
            let events = try await get("/events?limit=1000", as: EventsDocument.self).events
            if let event = events.first(where: condition) { return event }
            guard ContinuousClock.now < deadline else { throw TestKitError("no event \(what) in \(events)") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Waits until every node has answered its first probe.
    func waitUntilProbed() async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while try await get("/status", as: StatusDocument.self).nodes.contains(where: { $0.health != "up" }) {
            guard ContinuousClock.now < deadline else { throw TestKitError("nodes never came up") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    func stop() async throws {
        await app.shutDown()
        try await task.value
        await cluster.stop()
        folder.remove()
    }
}

/// Runs `body` with a started harness and stops it afterwards, also when `body` throws.
func withAdminHarness(
    withStore: Bool = true,
    initialRun: UpdateRun? = nil,
    reload: @escaping @Sendable (Balancer) async -> Void = { _ = try? await $0.reload(to: $0.configuration) },
    prepare: (SimulatedCluster) async throws -> Void = { _ in },
    configure: (inout BalancerConfiguration) -> Void = { _ in },
    _ body: (AdminHarness) async throws -> Void
) async throws {
    let harness = try await AdminHarness(
        withStore: withStore, initialRun: initialRun, reload: reload, prepare: prepare, configure: configure)
    do {
        try await body(harness)
    } catch {
        try? await harness.stop()
        throw error
    }
    try await harness.stop()
}
