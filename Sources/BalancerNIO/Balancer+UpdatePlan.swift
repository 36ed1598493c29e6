import AsyncHTTPClient
import BalancerCore
import Foundation
import NIOCore

/// The pre-flight report before a rolling update (`GET /update/plan`).
extension Balancer {
    /// The plan as the cluster stands now; the nodes' clocks are read from a status request made
    /// for it (the `Date` of each answer against the middle of the request).
    public func updatePlan() async -> UpdatePlan {
        let configuration = self.configuration
        let skews = await clockSkews(configuration)
        let limits = Dictionary(uniqueKeysWithValues: configuration.nodes.map { ($0.id, $0.maxConnections) })
        let nodes = directory.snapshot().map { entry in
            UpdatePlan.Node(
                status: entry.status, connections: entry.connections, maxConnections: limits[entry.status.id] ?? nil,
                clockSkew: skews[entry.status.id] ?? nil)
        }
        return UpdatePlan(
            nodes: nodes, run: await coordinator.run, consolePolicy: configuration.update.console,
            hasReconnectAction: configuration.reconnect != nil,
            maxUnavailable: configuration.reconnect?.maxUnavailable ?? 1,
            withoutInstall: configuration.nodes.filter { configuration.install(for: $0.id) == nil }.map(\.id))
    }

    /// Each node's clock minus the balancer's, when its status is an HTTP URL that answers with a `Date`.
    private func clockSkews(_ configuration: BalancerConfiguration) async -> [NodeID: TimeInterval?] {
        guard case .url(let template)? = configuration.status?.action else { return [:] }
        let timeout = configuration.status?.timeout ?? configuration.health.timeout
        return await withTaskGroup(of: (NodeID, TimeInterval?).self) { group in
            for node in configuration.nodes {
                let url = NodeAction.substitute(template, node: node, forURL: true)
                group.addTask { [httpClient] in
                    (node.id, await Self.clockSkew(url: url, timeout: timeout, httpClient: httpClient))
                }
            }
            var skews: [NodeID: TimeInterval?] = [:]
            for await (node, skew) in group { skews[node] = skew }
            return skews
        }
    }

    /// The node's `Date` minus the balancer's clock halfway through the request; nil without an answer.
    static func clockSkew(url: String, timeout: Duration, httpClient: HTTPClient) async -> TimeInterval? {
        let sent = Date()
        guard let response = try? await httpClient.execute(HTTPClientRequest(url: url), timeout: TimeAmount(timeout))
        else { return nil }
        let received = Date()
        _ = try? await response.body.collect(upTo: NodeReport.maximumSize)
        guard let header = response.headers.first(name: "Date"), let date = httpDate(header) else { return nil }
        return date.timeIntervalSince(sent.addingTimeInterval(received.timeIntervalSince(sent) / 2))
    }

    /// An IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), as HTTP servers send in `Date`.
    static func httpDate(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return formatter.date(from: text)
    }
}
