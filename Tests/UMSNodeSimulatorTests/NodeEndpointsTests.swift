import Foundation
import Testing
import UMSNodeSimulator

@Suite("Node endpoints", .timeLimit(.minutes(1)))
struct NodeEndpointsTests {
    @Test(.timeLimit(.minutes(1))) func freshNodeStatus() async throws {
        try await TestCluster.with { cluster in
            let status = try await cluster.status(0)
            #expect(status["id"] as? String == "ums1")
            #expect(status["mode"] as? String == "normal")
            #expect(status["version"] as? String == TestCluster.oldVersion)
            #expect(status["database"] as? String == "productive")
            #expect(status["console_logins_in_update_mode"] as? Int == 0)
            #expect(status["websockets_open"] as? Int == 0)
            #expect(status["connections_accepted"] as? [String: Int] == ["device": 0, "console": 0])
            #expect(try await cluster.nodes[0].productiveSchemaVersion() == NodeVersion(TestCluster.oldVersion))
            let response = try await cluster.control(0, "GET", "/status")
            #expect(response.header("Content-Type") == "application/json")
            #expect(response.header("Content-Length") == String(response.body.count))
        }
    }

    @Test(.timeLimit(.minutes(1))) func deviceProfileNamesNodeModeAndDatabase() async throws {
        try await TestCluster.with { cluster in
            let response = try await cluster.device(1, "/device/00:e0:c5:11:22:33/profile")
            #expect(response.status == 200)
            let json = try response.json()
            #expect(json["node"] as? String == "ums2")
            #expect(
                try await cluster.status(1)["connections_accepted"] as? [String: Int] == ["device": 1, "console": 0])
            #expect(json["mode"] as? String == "normal")
            #expect(json["database"] as? String == "productive")
            let profile = try #require(json["profile"] as? [String: Any])
            #expect(profile["mac"] as? String == "00E0C5112233")
            #expect(try await cluster.device(1, "/device/not-a-mac/profile").status == 400)
            #expect(try await cluster.device(1, "/nothing").status == 404)
        }
    }

    @Test(.timeLimit(.minutes(1))) func consoleServesDeviceConnectorAndLogin() async throws {
        try await TestCluster.with { cluster in
            let profile = try await cluster.console(0, "GET", "/device-connector/device/00E0C5AABBCC/profile").json()
            #expect(profile["node"] as? String == "ums1")
            #expect(profile["database"] as? String == "productive")
            #expect(profile.keys.contains("client_cert") && profile["client_cert"] is NSNull)
            #expect(profile["forwarded_for"] is NSNull)
            let forwarded = try await cluster.console(
                0, "GET", "/device-connector/device/00E0C5AABBCC/profile", headers: ["X-Forwarded-For": "192.0.2.7"]
            ).json()
            #expect(forwarded["forwarded_for"] as? String == "192.0.2.7")
            let pem = "-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n"
            let encoded = try #require(pem.addingPercentEncoding(withAllowedCharacters: .alphanumerics))
            let withCert = try await cluster.console(
                0, "GET", "/device-connector/device/00E0C5AABBCC/profile", headers: ["X-SSL-CERT": encoded]
            ).json()
            #expect(withCert["client_cert"] as? String == clientCertificateSubject(fromHeader: encoded))

            let login = try await cluster.console(0, "POST", "/console/login")
            #expect(login.status == 200)
            let json = try login.json()
            #expect(json["node"] as? String == "ums1")
            #expect((json["session"] as? String)?.isEmpty == false)
            #expect(json["warning"] == nil)
            #expect(try await cluster.status(0)["console_logins_in_update_mode"] as? Int == 0)

            let missing = try await cluster.console(0, "GET", "/console/unknown")
            #expect(missing.status == 404)
            #expect(try missing.json()["error"] is String)
        }
    }

    @Test(.timeLimit(.minutes(1))) func keepAliveServesSeveralRequests() async throws {
        try await TestCluster.with(count: 1) { cluster in
            try await TestConnection.with(host: cluster.host(0), port: cluster.nodes[0].ports.device) { connection in
                for _ in 0..<3 {
                    let response = try await connection.request("GET", "/device/00E0C5000001/profile")
                    #expect(response.status == 200)
                    #expect(response.header("Connection") == "keep-alive")
                }
            }
        }
    }

    @Test(.timeLimit(.minutes(1))) func installRejectsBadVersions() async throws {
        try await TestCluster.with(count: 1) { cluster async throws in
            #expect(try await cluster.control(0, "POST", "/control/install").status == 400)
            #expect(try await cluster.control(0, "POST", "/control/install?version=twelve").status == 400)
            #expect(try await cluster.control(0, "POST", "/control/install?version=12.07.100&seconds=x").status == 400)
            #expect(try await cluster.status(0)["mode"] as? String == "normal")
        }
    }

    @Test(.timeLimit(.minutes(1))) func consoleLoginInUpdateModeWarnsAndCounts() async throws {
        try await TestCluster.with { cluster in
            // Long enough that the second request surely finds the node still installing.
            let install = try await cluster.control(0, "POST", "/control/install?version=12.07.100&seconds=1.5")
            #expect(install.status == 202)
            #expect(try await cluster.control(0, "POST", "/control/install?version=12.07.100").status == 409)
            #expect(try await cluster.waitForMode(0, "update")["mode"] as? String == "update")

            for expected in 1...2 {
                let login = try await cluster.console(0, "POST", "/console/login")
                #expect(login.status == 200)
                let json = try login.json()
                #expect((json["warning"] as? String)?.contains("lost") == true)
                #expect(try await cluster.status(0)["console_logins_in_update_mode"] as? Int == expected)
            }
            #expect(cluster.nodes[0].consoleLoginsInUpdateMode == 2)

            // Before the last node renews the schema, reconnecting is refused with a reason.
            let reconnect = try await cluster.control(0, "POST", "/control/reconnect")
            #expect(reconnect.status == 409)
            #expect((try reconnect.json()["error"] as? String)?.contains("schema") == true)
            #expect(try await cluster.status(0)["mode"] as? String == "update")

            let normalLogin = try await cluster.console(1, "POST", "/console/login").json()
            #expect(normalLogin["warning"] == nil)
            #expect(try await cluster.status(1)["console_logins_in_update_mode"] as? Int == 0)
        }
    }
}
