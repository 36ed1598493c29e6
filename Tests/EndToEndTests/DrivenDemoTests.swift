import BalancerTesting
import Testing

/// `ums-balancer demo --drive`: the demo's update driven by the balancer (`update start`).
@Suite(.timeLimit(.minutes(2)))
struct DrivenDemoTests {
    @Test func theDrivenDemoUpdatesEveryServerThroughUpdateStartAndExitsZero() async throws {
        let demo = try await ProcessHarness("ums-balancer", ["demo", "--drive", "--speed", "3", "--devices", "3"])
        defer { demo.kill() }
        let status = try await demo.waitForExit(timeout: .seconds(100))
        let output = demo.output
        #expect(status == 0, "\(output)")
        #expect(output.contains("operator: ums-balancer update start --version 12.07.100"), "\(output)")
        #expect(!output.contains("admin: running the installer"), "no scripted admin: \(output)")
        for node in ["ums1", "ums2", "ums3"] {
            #expect(output.contains("drive: \(node): install of 12.07.100 requested"), "\(output)")
            #expect(output.contains("drive: \(node): step done in"), "\(output)")
        }
        #expect(output.contains("drive: running -> completed"), "\(output)")
        #expect(output.contains("completed: 12.07.100, 3 of 3 servers updated"))
        #expect(output.contains(" 0 failed"))
        #expect(output.contains("result          OK"))
    }
}
