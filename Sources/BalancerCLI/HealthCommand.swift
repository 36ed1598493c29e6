import ArgumentParser
import AsyncHTTPClient
import Foundation

/// `ums-balancer health`: exit 0 when the running balancer serves (`GET /healthz` answers 200),
/// else 1. Made for keepalived's `vrrp_script` and other checks: it needs no token and reads only
/// the config file's `admin` section.
struct HealthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health",
        abstract: "Exit 0 if the running balancer's listeners are open and serving, else 1 (GET /healthz)."
    )

    @OptionGroup var options: AdminOptions

    @Flag(name: .shortAndLong, help: "Print nothing; the exit status is the answer.")
    var quiet = false

    func run() async throws {
        let baseURL: String
        do {
            baseURL = try AdminClient.baseURL(options)
        } catch {
            printError("error: \(error.description)")
            throw ExitCode(1)
        }
        var request = HTTPClientRequest(url: baseURL + "/healthz")
        request.method = .GET
        var settings = HTTPClient.Configuration()
        settings.timeout = .init(connect: .seconds(2), read: .seconds(2))
        // A refused connect is the answer (nothing runs there), not a reason to retry until the timeout.
        settings.connectionPool.retryConnectionEstablishment = false
        settings.redirectConfiguration = .disallow
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: settings)
        let answer: Result<Int, any Error>
        do {
            let response = try await client.execute(request, timeout: .seconds(3))
            _ = try await response.body.collect(upTo: 4096)
            answer = .success(Int(response.status.code))
        } catch {
            answer = .failure(error)
        }
        try? await client.shutdown()
        let status: Int
        switch answer {
        case .success(let code): status = code
        case .failure(let error):
            if !quiet { print("unhealthy: nothing answers at \(baseURL) (\(AdminClient.reason(error)))") }
            throw ExitCode(1)
        }
        switch status {
        case 200:
            if !quiet { print("healthy: serving (\(baseURL))") }
        case 503:
            if !quiet { print("unhealthy: starting or shutting down (\(baseURL), 503)") }
            throw ExitCode(1)
        default:
            if !quiet { print("unhealthy: \(baseURL)/healthz answered \(status)") }
            throw ExitCode(1)
        }
    }
}
