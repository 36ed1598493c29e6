import AsyncHTTPClient
import BalancerCore
import BalancerDataPath
import NIOCore

/// Calls a node's reconnect action: an HTTP POST or an operator command. Each call is bounded by
/// the timeout the update-run state machine gives it; the answer goes back to the machine, which
/// owns retries and deadlines.
struct ReconnectCaller: Sendable {
    let action: NodeAction
    let httpClient: HTTPClient

    func call(_ node: NodeConfiguration, timeout callTimeout: Duration) async -> ReconnectAnswer {
        await NodeActionCall.call(action, node: node, timeout: callTimeout, httpClient: httpClient)
    }
}

/// One call of a node action (reconnect, install): a POST to its URL or a run of its command, with
/// the placeholders filled in; 2xx or exit 0 is `accepted`, anything else `rejected` with why.
enum NodeActionCall {
    static func call(
        _ action: NodeAction, node: NodeConfiguration, version: String? = nil, timeout callTimeout: Duration,
        httpClient: HTTPClient
    ) async -> ReconnectAnswer {
        switch action {
        case .url(let template):
            let url = NodeAction.substitute(template, node: node, forURL: true, version: version)
            do {
                var request = HTTPClientRequest(url: url)
                request.method = .POST
                let response = try await httpClient.execute(request, timeout: TimeAmount(callTimeout))
                let body = try await response.body.collect(upTo: 16 * 1024)
                let code = response.status.code
                guard !(200..<300).contains(code) else { return .accepted("HTTP \(code)") }
                // A refusal's body says why (the simulated node: "update mode before the schema is renewed").
                let text = String(buffer: body).trimmingCharacters(in: .whitespacesAndNewlines).prefix(200)
                return .rejected("HTTP \(code)" + (text.isEmpty ? "" : ": \(text)"))
            } catch {
                return .rejected(NIORelay.describe(error))
            }
        case .command(let words):
            let filled = words.map { NodeAction.substitute($0, node: node, forURL: false, version: version) }
            switch await CommandRunner.run(filled, timeout: callTimeout, outputLimit: 16 * 1024) {
            case .success(let output):
                let text = String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                return .accepted(text.isEmpty ? "exit 0" : String(text.prefix(200)))
            case .failure(let error):
                return .rejected(error.description)
            }
        }
    }
}
