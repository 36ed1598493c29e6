import Foundation
import Logging
import Testing
import UMSNodeSimulator

/// A simulated node restarted with the same arguments comes back as a real server's installation
/// does: on the version it installed, in the mode that version implies, with its local copy.
@Suite("Node restart", .timeLimit(.minutes(1)))
struct NodeRestartTests {
    let install = "/control/install?version=\(TestCluster.newVersion)&seconds=0.3"

    /// Stops `node` and starts a new one with its configuration, as a watchdog would after a kill.
    func restart(_ node: SimulatedNode) async throws -> SimulatedNode {
        await node.stop()
        var logger = Logger(label: "ums-node-sim-tests")
        logger.logLevel = .error
        let restarted = SimulatedNode(configuration: node.configuration, logger: logger)
        try await restarted.start()
        return restarted
    }

    @Test func aNodeStoppedInUpdateModeAfterTheSchemaWasRenewedComesBackInUpdateModeOnTheNewVersion() async throws {
        try await TestCluster.with(count: 2) { cluster in
            #expect(try await cluster.control(0, "POST", install).status == 202)
            #expect(try await cluster.waitForMode(0, "update")["version"] as? String == TestCluster.newVersion)
            await cluster.nodes[0].stop()  // killed in update mode, before its reconnect
            #expect(try await cluster.control(1, "POST", install).status == 202)
            _ = try await cluster.waitForMode(1, "normal")
            #expect(try await cluster.nodes[1].productiveSchemaVersion().text == TestCluster.newVersion)

            let restarted = try await restart(cluster.nodes[0])
            #expect(restarted.mode == .update, "it still needs its reconnect")
            #expect(restarted.version.text == TestCluster.newVersion, "not its old version: the cluster can finish")
            #expect(restarted.database == .localCopy)
            // The reconnect brings it to the productive database, as it would have before the kill.
            let reconnect = try await TestHTTP.request(
                "POST", host: restarted.configuration.host, port: restarted.ports.control, "/control/reconnect")
            #expect(reconnect.status == 202)
            let deadline = ContinuousClock.now + .seconds(10)
            while restarted.mode != .normal, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(restarted.mode == .normal)
            #expect(restarted.database == .productive)
            await restarted.stop()
        }
    }

    @Test func aNodeUpdatedAheadOfTheClusterResumesUpdateModeEvenWithoutItsLocalCopy() async throws {
        try await TestCluster.with(count: 2) { cluster in
            #expect(try await cluster.control(0, "POST", install).status == 202)
            _ = try await cluster.waitForMode(0, "update")
            await cluster.nodes[0].stop()
            try FileManager.default.removeItem(atPath: cluster.nodes[0].localCopyPath)

            let restarted = try await restart(cluster.nodes[0])
            #expect(restarted.mode == .update)
            #expect(restarted.version.text == TestCluster.newVersion)
            #expect(restarted.database == .localCopy)
            #expect(FileManager.default.fileExists(atPath: restarted.localCopyPath), "a fresh copy was made")
            await restarted.stop()
        }
    }

    @Test func anUpdatedNormalNodeRestartedWithItsOldArgumentsKeepsItsVersion() async throws {
        try await TestCluster.with(count: 1) { cluster in
            #expect(try await cluster.control(0, "POST", install).status == 202)
            _ = try await cluster.waitForMode(0, "installing")
            let status = try await cluster.waitForMode(0, "normal")
            #expect(status["version"] as? String == TestCluster.newVersion)

            let restarted = try await restart(cluster.nodes[0])
            #expect(restarted.mode == .normal)
            #expect(restarted.version.text == TestCluster.newVersion)
            await restarted.stop()
        }
    }

    @Test func nodesStartingTogetherOnANewClusterNeverFailOnTheSharedDatabase() async throws {
        var logger = Logger(label: "ums-node-sim-tests")
        logger.logLevel = .critical
        for _ in 0..<8 {
            let directory = FileManager.default.temporaryDirectory
                .appendingPathComponent("ums-node-sim-tests-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: directory) }
            let nodes = (1...6).map { index in
                SimulatedNode(
                    configuration: .init(id: "ums\(index)", host: "127.0.0.1", dataDirectory: directory), logger: logger
                )
            }
            let failures = await withTaskGroup(of: String?.self) { group in
                for node in nodes {
                    group.addTask {
                        do {
                            try await node.start()
                            return nil
                        } catch {
                            return "\(node.configuration.id): \(error)"
                        }
                    }
                }
                return await group.reduce(into: [String]()) { if let failure = $1 { $0.append(failure) } }
            }
            for node in nodes { await node.stop() }
            #expect(failures.isEmpty, "\(failures)")
        }
    }
}
