import Foundation
import Testing
import UMSNodeSimulator

@Suite("Rolling update", .timeLimit(.minutes(1)))
struct RollingUpdateTests {
    // Long enough that the status asked right after the 202 surely finds the node still installing.
    let install = "/control/install?version=\(TestCluster.newVersion)&seconds=2.5"

    @Test(.timeLimit(.minutes(1))) func fullRollingUpdate() async throws {
        try await TestCluster.with(reconnectSeconds: 1) { cluster in
            // Node 1: installing (old version, ports refused), then update mode on a local copy.
            let accepted = try await cluster.control(0, "POST", install)
            #expect(accepted.status == 202)
            let installing = try await cluster.status(0)
            #expect(installing["mode"] as? String == "installing")
            #expect(installing["version"] as? String == TestCluster.oldVersion)
            #expect(await cluster.servicePortsRefuse(0))
            let updated = try await cluster.waitForMode(0, "update")
            #expect(updated["version"] as? String == TestCluster.newVersion)
            #expect(updated["database"] as? String == "local-copy")
            #expect(cluster.localCopyExists(0))
            let profile = try await cluster.device(0, "/device/00E0C5112233/profile").json()
            #expect(profile["mode"] as? String == "update")
            #expect(profile["database"] as? String == "local-copy")

            // Node 2: update mode too.
            #expect(try await cluster.control(1, "POST", install).status == 202)
            #expect(try await cluster.waitForMode(1, "update")["database"] as? String == "local-copy")
            #expect(cluster.localCopyExists(1))

            // Node 3, the last one: renews the productive schema and stays normal.
            #expect(try await cluster.control(2, "POST", install).status == 202)
            #expect(try await cluster.status(2)["mode"] as? String == "installing")
            let last = try await cluster.waitForMode(2, "normal")
            #expect(last["version"] as? String == TestCluster.newVersion)
            #expect(last["database"] as? String == "productive")
            #expect(!cluster.localCopyExists(2))
            #expect(try await cluster.nodes[2].productiveSchemaVersion() == NodeVersion(TestCluster.newVersion))

            // Nodes 1 and 2 reconnect: 202, reconnecting with ports closed, then normal on productive.
            for index in 0...1 {
                let reconnect = try await cluster.control(index, "POST", "/control/reconnect")
                #expect(reconnect.status == 202)
                #expect(try await cluster.status(index)["mode"] as? String == "reconnecting")
                #expect(await cluster.servicePortsRefuse(index))
                #expect(try await cluster.control(index, "POST", "/control/reconnect").status == 200)
                let normal = try await cluster.waitForMode(index, "normal")
                #expect(normal["database"] as? String == "productive")
                #expect(normal["version"] as? String == TestCluster.newVersion)
                #expect(!cluster.localCopyExists(index))
                let profile = try await cluster.device(index, "/device/00E0C5112233/profile").json()
                #expect(profile["database"] as? String == "productive")
                #expect(try await cluster.control(index, "POST", "/control/reconnect").status == 200)
            }
        }
    }

    @Test(.timeLimit(.minutes(1))) func aNodeShowsItsNewModeOnlyOnceItServesInIt() async throws {
        // A balancer sends devices to a node as soon as it reports update or normal mode: the
        // device port must be open by then, or the first device is refused.
        try await TestCluster.with(count: 2) { cluster in
            let node = cluster.nodes[0]
            let path = "/control/install?version=\(TestCluster.newVersion)&seconds=0.2"
            #expect(try await cluster.control(0, "POST", path).status == 202)
            var sawUpdate = false
            let deadline = ContinuousClock.now + .seconds(10)
            while !sawUpdate, ContinuousClock.now < deadline {
                let mode = node.mode
                if mode == .update {
                    sawUpdate = true
                    #expect(node.servicePortsOpen, "update mode shown before the ports reopened")
                }
                #expect(mode == .installing || mode == .update, "\(mode)")
                try await Task.sleep(for: .microseconds(200))
            }
            #expect(sawUpdate)
        }
    }

    @Test(.timeLimit(.minutes(1))) func goingDownFinishesTheRequestInFlight() async throws {
        try await TestCluster.with(count: 2) { cluster in
            let host = cluster.host(0)
            let ports = cluster.nodes[0].ports
            try await TestConnection.with(host: host, port: ports.console) { busy in
                try await TestConnection.with(host: host, port: ports.device) { idle in
                    #expect(try await idle.request("GET", "/device/00E0C5000001/profile").status == 200)
                    // Half a request body: the request is in flight when the install starts.
                    try await busy.send("POST /console/login HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\n12345")
                    try await Task.sleep(for: .milliseconds(200))
                    #expect(try await cluster.control(0, "POST", install).status == 202)
                    #expect(await cluster.servicePortsRefuse(0))
                    #expect(try await idle.closesWithoutData(), "an idle keep-alive connection closes at once")
                    try await busy.send("67890")
                    let response = try await busy.readResponse()
                    #expect(response.status == 200)
                    #expect(response.header("Connection") == "close")
                    #expect(try response.json()["session"] is String)
                    #expect(try await busy.closesWithoutData())
                }
            }
            #expect(try await cluster.waitForMode(0, "update")["mode"] as? String == "update")
            #expect(try await cluster.device(0, "/device/00E0C5000001/profile").status == 200)
        }
    }
}
