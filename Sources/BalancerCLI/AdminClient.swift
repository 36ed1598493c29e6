import ArgumentParser
import AsyncHTTPClient
import BalancerAdmin
import BalancerConfigFile
import BalancerCore
import Foundation
import NIOCore

/// Where the operator commands find the admin API: the config file's `admin` section, or
/// `--admin URL` with `--token-file FILE`.
struct AdminOptions: ParsableArguments {
    @Option(
        name: .customLong("config"),
        help:
            "The configuration file; its `admin` section gives the address and token (default: \(ConfigLocation.installed) when it exists, else \(ConfigLocation.checkout))."
    )
    var explicitConfig: String?

    /// The file whose `admin` section is read.
    var config: String { ConfigLocation.path(explicitConfig) ?? ConfigLocation.checkout }

    @Option(name: .long, help: "The admin API's URL (e.g. http://127.0.0.1:9900) instead of the config file's.")
    var admin: String?

    @Option(name: .long, help: "The file holding the admin token (with --admin).")
    var tokenFile: String?
}

/// Why an operator command could not do what it was asked.
enum AdminClientError: Error, CustomStringConvertible {
    /// The configuration cannot be read, or has no `admin` section.
    case configuration(String)
    /// The token file cannot be read or is empty.
    case tokenFile(path: String, reason: String)
    /// Nothing answered at the address.
    case notRunning(url: String, reason: String)
    /// The API answered 401.
    case unauthorized(tokenSent: Bool)
    /// The API refused the request with its own reason (unknown node, not stalled, rejected reload).
    case refused(status: Int, message: String)
    /// The answer was not what the API sends.
    case badAnswer(String)

    var description: String {
        switch self {
        case .configuration(let text): text
        case .tokenFile(let path, let reason): "cannot read the admin token file \(path): \(reason)"
        case .notRunning(let url, let reason): "the balancer is not running at \(url) (\(reason))"
        case .unauthorized(let tokenSent):
            tokenSent
                ? "the admin token was refused (401)"
                : "the admin API wants a token (401): set admin.token_file in the config or pass --token-file"
        case .refused(let status, let message): "\(message) (\(status))"
        case .badAnswer(let text): "unexpected answer from the admin API: \(text)"
        }
    }
}

/// The HTTP methods the admin API uses.
enum AdminMethod: String {
    case get = "GET", post = "POST", put = "PUT"
}

/// A few HTTP calls to the running balancer's admin API.
struct AdminClient {
    let baseURL: String
    let token: String?

    /// The client `options` point at. With `--config`, only the file's `admin` section is read:
    /// an unrelated mistake elsewhere in it (one the running balancer rejected) changes nothing here.
    init(_ options: AdminOptions) throws(AdminClientError) {
        baseURL = try Self.baseURL(options)
        if options.admin != nil {
            token = try options.tokenFile.map { path throws(AdminClientError) in try Self.readToken(path) }
            return
        }
        let settings = try Self.adminSettings(options)
        token = try (options.tokenFile ?? settings.tokenFile).map { path throws(AdminClientError) in
            try Self.readToken(path)
        }
    }

    /// The admin API's URL: `--admin` (a scheme-less `HOST:PORT` means `http://HOST:PORT`), else
    /// the config file's `admin.bind`.
    static func baseURL(_ options: AdminOptions) throws(AdminClientError) -> String {
        guard let admin = options.admin else { return url(connectingTo: try adminSettings(options).bind) }
        var text = admin.hasSuffix("/") ? String(admin.dropLast()) : admin
        if !text.contains("://") { text = "http://" + text }
        guard text.hasPrefix("http://") || text.hasPrefix("https://"),
            let url = URL(string: text), let host = url.host, !host.isEmpty, url.port != nil
        else {
            throw .configuration(
                "--admin '\(admin)' is not an admin address: write HOST:PORT or http://HOST:PORT, e.g. 127.0.0.1:9900")
        }
        return text
    }

    /// The `admin` section of the config file; an error when it has none.
    static func adminSettings(_ options: AdminOptions) throws(AdminClientError) -> AdminSettings {
        let settings: AdminSettings?
        guard ConfigLocation.path(options.explicitConfig) != nil else {
            throw .configuration(ConfigLocation.missing().description)
        }
        do {
            settings = try ConfigFile.loadAdmin(path: options.config)
        } catch {
            throw .configuration(error.description)
        }
        guard let settings else {
            throw .configuration(
                "\(options.config) has no admin section, so the balancer runs no admin API: add "
                    + "`admin: { bind: 127.0.0.1:9900, token_file: admin.token }` or pass --admin URL")
        }
        return settings
    }

    /// Sends one request; returns the body of a 2xx answer, throws a readable error for anything else.
    func send(_ method: AdminMethod, _ path: String, json body: String? = nil) async throws(AdminClientError) -> Data {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method =
            switch method {
            case .get: .GET
            case .post: .POST
            case .put: .PUT
            }
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        var settings = HTTPClient.Configuration()
        settings.timeout = .init(connect: .seconds(5), read: .seconds(120))
        // A refused connect means nothing runs there: say so at once instead of retrying until the timeout.
        settings.connectionPool.retryConnectionEstablishment = false
        settings.redirectConfiguration = .disallow
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: settings)
        let answer: Result<(status: Int, data: Data), any Error>
        do {
            let response = try await client.execute(request, timeout: .seconds(120))
            let body = try await response.body.collect(upTo: 16 * 1024 * 1024)
            answer = .success((Int(response.status.code), Data(body.readableBytesView)))
        } catch {
            answer = .failure(error)
        }
        try? await client.shutdown()
        let (status, data): (Int, Data)
        switch answer {
        case .success(let received): (status, data) = received
        case .failure(let error): throw .notRunning(url: baseURL, reason: Self.reason(error))
        }
        switch status {
        case 200..<300: return data
        case 401: throw .unauthorized(tokenSent: token != nil)
        default:
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            let message = object?["error"] as? String ?? String(decoding: data.prefix(200), as: UTF8.self)
            throw .refused(status: status, message: message)
        }
    }

    /// Sends one request and decodes the JSON answer.
    func send<Document: Decodable>(
        _ method: AdminMethod, _ path: String, json body: String? = nil, as type: Document.Type
    ) async throws(AdminClientError) -> Document {
        let data = try await send(method, path, json: body)
        do {
            return try JSONDecoder.admin.decode(Document.self, from: data)
        } catch {
            throw .badAnswer("\(method.rawValue) \(path): \(error)")
        }
    }

    // MARK: - Helpers

    /// A wildcard bind is reached on loopback; IPv6 goes in brackets.
    static func url(connectingTo bind: Endpoint) -> String {
        let host =
            switch bind.host {
            case "0.0.0.0": "127.0.0.1"
            case "::", "0:0:0:0:0:0:0:0": "::1"
            default: bind.host
            }
        return "http://\(host.contains(":") ? "[\(host)]" : host):\(bind.port)"
    }

    private static func readToken(_ path: String) throws(AdminClientError) -> String {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .tokenFile(path: path, reason: (error as NSError).localizedDescription)
        }
        let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else { throw .tokenFile(path: path, reason: "it is empty") }
        return token
    }

    static func reason(_ error: any Error) -> String {
        let text = String(describing: error)
        if text.localizedCaseInsensitiveContains("refused") { return "connection refused" }
        if let error = error as? HTTPClientError, error == .deadlineExceeded || error == .connectTimeout {
            return "no answer in time"
        }
        return text
    }
}

/// Runs an operator command's body, printing a failure as one line on stderr with exit status 1.
func runAdminCommand(_ body: () async throws(AdminClientError) -> Void) async throws {
    do {
        try await body()
    } catch {
        printError("error: \(error.description)")
        throw ExitCode(1)
    }
}
