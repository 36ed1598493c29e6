import AsyncHTTPClient
import BalancerCore
import BalancerDataPath
import Foundation
import NIOCore
import NIOPosix

/// One way of asking a node how it is: a TCP connect, an HTTP(S) GET of its status JSON, or an
/// operator command printing that JSON. Every probe ends within its timeout, whatever the node does.
struct NodeProbe: Sendable {
    enum Kind: Sendable {
        case tcpConnect(port: Int)
        case httpStatus(urlTemplate: String)
        case command([String])
    }

    let kind: Kind
    let timeout: Duration
    let group: any EventLoopGroup
    let httpClient: HTTPClient

    /// Probes `node` once.
    func probe(_ node: NodeConfiguration) async -> ProbeOutcome {
        switch kind {
        case .tcpConnect(let port):
            return await tcpConnect(node, port: port)
        case .httpStatus(let template):
            return await httpStatus(node, url: NodeAction.substitute(template, node: node, forURL: true))
        case .command(let words):
            return await command(words.map { NodeAction.substitute($0, node: node, forURL: false) })
        }
    }

    private func tcpConnect(_ node: NodeConfiguration, port: Int) async -> ProbeOutcome {
        let bootstrap = ClientBootstrap(group: group).connectTimeout(TimeAmount(timeout))
        do {
            let channel: any Channel
            if let address = try? SocketAddress(ipAddress: node.host, port: port) {
                channel = try await bootstrap.connect(to: address).get()
            } else {
                channel = try await bootstrap.connect(host: node.host, port: port).get()
            }
            try? await channel.close()
            return .answered(nil)
        } catch {
            return .failed(NIORelay.describe(error))
        }
    }

    private func httpStatus(_ node: NodeConfiguration, url: String) async -> ProbeOutcome {
        do {
            var request = HTTPClientRequest(url: url)
            request.headers.add(name: "Accept", value: "application/json")
            let response = try await httpClient.execute(request, timeout: TimeAmount(timeout))
            let body = try await response.body.collect(upTo: NodeReport.maximumSize)
            guard response.status == .ok else { return .failed("status answered HTTP \(response.status.code)") }
            return .answered(try NodeReport.parse(body.readableBytesView))
        } catch let error as NodeReport.ParseError {
            return .failed(error.description)
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout {
            return .failed("status timed out after \(DurationText.format(timeout))")
        } catch {
            return .failed("status: \(NIORelay.describe(error))")
        }
    }

    private func command(_ words: [String]) async -> ProbeOutcome {
        switch await CommandRunner.run(words, timeout: timeout, outputLimit: NodeReport.maximumSize) {
        case .failure(let error):
            return .failed("status command: \(error)")
        case .success(let output):
            do {
                return .answered(try NodeReport.parse(output))
            } catch {
                return .failed("\(error)")
            }
        }
    }
}

extension NodeAction {
    /// Fills `{host}` and `{id}` in (and `{version}`, when given); IPv6 hosts get brackets inside URLs.
    static func substitute(_ template: String, node: NodeConfiguration, forURL: Bool, version: String? = nil) -> String
    {
        let host = forURL && node.host.contains(":") ? "[\(node.host)]" : node.host
        let filled = template.replacingOccurrences(of: "{host}", with: host).replacingOccurrences(
            of: "{id}", with: node.id)
        return version.map { filled.replacingOccurrences(of: "{version}", with: $0) } ?? filled
    }
}
