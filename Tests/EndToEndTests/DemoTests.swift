import BalancerTesting
import Foundation
import Testing

/// `ums-balancer demo`, the first thing a new user runs.
@Suite(.timeLimit(.minutes(2)))
struct DemoTests {
    @Test func theDemoWalksThroughAWholeRollingUpdateAndExitsZero() async throws {
        let demo = try await ProcessHarness(
            "ums-balancer", ["demo", "--speed", "3", "--devices", "3", "--websocket-devices", "3"])
        defer { demo.kill() }
        let status = try await demo.waitForExit(timeout: .seconds(90))
        let output = demo.output
        #expect(status == 0, "\(output)")
        #expect(output.contains("update run in-progress -> reconnecting"))
        #expect(output.contains("completed: 12.07.100, 3 of 3 servers updated"))
        #expect(output.contains(" 0 failed"))
        #expect(output.contains("0 accepted by a server in update mode"))
        #expect(output.contains("result          OK"))
        // The WebSocket devices moved when their servers went down or were drained, and no message was lost.
        let line = try #require(output.split(separator: "\n").first { $0.hasPrefix("  websockets ") }, "\(output)")
        let numbers = Self.numbers(in: String(line))
        // "3 devices: C connects, R reconnects (G closed by a server going down, D ended ...); S sent, E echoed, L lost"
        #expect(numbers.count == 8, "\(line)")
        if numbers.count == 8 {
            #expect(numbers[0] == 3)
            #expect(numbers[2] >= 3, "every device reconnected at least once: \(line)")
            #expect(numbers[3] >= 1, "servers going down closed WebSockets with a close frame: \(line)")
            #expect(numbers[5] > 0 && numbers[5] == numbers[6], "every message echoed: \(line)")
            #expect(numbers[7] == 0, "\(line)")
        }
    }

    static func numbers(in text: String) -> [Int] {
        text.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
    }

    @Test func theDemoRejectsNonsenseOptions() async throws {
        let result = try await ProcessHarness.run("ums-balancer", ["demo", "--nodes", "1"])
        #expect(result.status != 0)
        #expect(result.output.contains("--nodes must be between 2 and 9"))
    }
}
