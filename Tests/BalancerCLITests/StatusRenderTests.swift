import BalancerAdmin
import Foundation
import Testing

@testable import BalancerCLI

/// `ums-balancer status`: the node table says why a node takes no new connections.
@Suite struct StatusRenderTests {
    @Test func aNodeDrainedForItsInstallSaysSoAndAnOlderBalancersStatusStillReads() throws {
        let json = """
            {"nodes": [{"id": "ums1", "mode": "normal", "health": "up", "admin": "active", "version": "12.06.100",
                        "connections": 2, "mode_override": null, "reconnect_drain": false, "install_drain": true},
                       {"id": "ums2", "mode": "normal", "health": "up", "admin": "active", "version": "12.06.100",
                        "connections": 5, "mode_override": null, "reconnect_drain": false}],
             "update": {"state": "idle", "target_version": null, "updated": 0, "total": 2,
                        "summary": "no update run", "reconnects": {}, "flags": [], "last_run": null},
             "config": {"generation": 1, "last_reload": {"ok": true, "at": "2026-11-25T10:00:00Z", "error": null}},
             "balancer": {"connections": 7, "listeners": ["devices"]}}
            """
        let status = try JSONDecoder.admin.decode(StatusDocument.self, from: Data(json.utf8))
        #expect(status.nodes.map(\.installDrain) == [true, false])
        let lines = StatusCommand.render(status).split(separator: "\n").map(String.init)
        #expect(lines[0].hasSuffix("NOTE"), "\(lines)")
        #expect(lines[1].hasPrefix("ums1") && lines[1].hasSuffix("drained for its install"), "\(lines)")
        #expect(lines[2].hasPrefix("ums2") && !lines[2].contains("drained"), "\(lines)")
    }
}
