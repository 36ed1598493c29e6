import Foundation
import Testing
import UMSNodeSimulator

/// `install_requests` in the status JSON: every `POST /control/install` a node received, so a test
/// can tell how often a balancer called a node's install.
@Suite("Install requests", .timeLimit(.minutes(1)))
struct InstallRequestsTests {
    @Test func everyInstallRequestIsCountedAcceptedOrNot() async throws {
        try await TestCluster.with { cluster in
            #expect(try await cluster.status(0)["install_requests"] as? Int == 0)
            #expect(try await cluster.control(0, "POST", "/control/install?version=twelve").status == 400)
            let accepted = try await cluster.control(
                0, "POST", "/control/install?version=\(TestCluster.newVersion)&seconds=5")
            #expect(accepted.status == 202)
            let again = try await cluster.control(
                0, "POST", "/control/install?version=\(TestCluster.newVersion)&seconds=5")
            #expect(again.status == 409, "already installing")
            #expect(try await cluster.status(0)["install_requests"] as? Int == 3)
            #expect(cluster.nodes[0].installRequests == 3)
            #expect(try await cluster.status(1)["install_requests"] as? Int == 0)
        }
    }
}
