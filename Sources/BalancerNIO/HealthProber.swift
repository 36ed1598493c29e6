import BalancerCore
import Logging
import NIOCore
import NIOPosix

/// Checks each node with a TCP connect on its health port and feeds the results, damped by
/// rise/fall, into the node directory.
final class HealthProber: Sendable {
    private let nodes: [NodeConfiguration]
    private let settings: HealthSettings
    private let port: Int
    private let directory: NodeDirectory
    private let group: any EventLoopGroup
    private let logger: Logger

    init(
        nodes: [NodeConfiguration],
        settings: HealthSettings,
        port: Int,
        directory: NodeDirectory,
        group: any EventLoopGroup,
        logger: Logger
    ) {
        self.nodes = nodes
        self.settings = settings
        self.port = port
        self.directory = directory
        self.group = group
        self.logger = logger
    }

    /// Probes every node once, together, then keeps probing each on its interval until cancelled.
    /// `firstRoundDone` runs once every node has had its first answer.
    func run(firstRoundDone: @Sendable () async throws -> Void) async throws {
        var trackers = Dictionary(
            uniqueKeysWithValues: nodes.map {
                ($0.id, HealthTracker(rise: settings.rise, fall: settings.fall))
            })
        await withTaskGroup(of: (NodeID, Result<Void, any Error>).self) { group in
            for node in nodes {
                group.addTask { (node.id, await self.probe(node)) }
            }
            for await (id, result) in group {
                record(result, for: id, tracker: &trackers[id]!)
            }
        }
        try await firstRoundDone()
        try await withThrowingDiscardingTaskGroup { group in
            for node in nodes {
                let tracker = trackers[node.id]!
                group.addTask { try await self.probeForever(node, tracker: tracker) }
            }
        }
    }

    private func probeForever(_ node: NodeConfiguration, tracker: HealthTracker) async throws {
        var tracker = tracker
        while true {
            try await Task.sleep(for: settings.interval)
            record(await probe(node), for: node.id, tracker: &tracker)
        }
    }

    private func record(_ result: Result<Void, any Error>, for id: NodeID, tracker: inout HealthTracker) {
        let success = (try? result.get()) != nil
        guard let health = tracker.record(success: success) else { return }
        directory.update(id) { $0.health = health }
        switch result {
        case .success:
            logger.notice("node is up", metadata: ["node": "\(id)"])
        case .failure(let error):
            logger.warning("node is down", metadata: ["node": "\(id)", "probe": "\(ProxyHandler.describe(error))"])
        }
    }

    /// One TCP connect to the node's health port, closed at once.
    private func probe(_ node: NodeConfiguration) async -> Result<Void, any Error> {
        let bootstrap = ClientBootstrap(group: group).connectTimeout(TimeAmount(settings.timeout))
        do {
            let channel: any Channel
            if let address = try? SocketAddress(ipAddress: node.host, port: port) {
                channel = try await bootstrap.connect(to: address).get()
            } else {
                channel = try await bootstrap.connect(host: node.host, port: port).get()
            }
            try? await channel.close()
            return .success(())
        } catch {
            return .failure(error)
        }
    }
}
