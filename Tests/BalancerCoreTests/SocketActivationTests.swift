import BalancerCore
import Testing

/// Sockets systemd passes are matched to listeners by name, and only in the process they are for.
@Suite struct SocketActivationTests {
    @Test func namedSocketsFromDescriptorThreeOn() throws {
        let passed = try SocketActivation(
            environment: ["LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "devices:web"], processID: 42)
        #expect(
            passed
                == SocketActivation(sockets: [
                    .init(name: "devices", descriptor: 3), .init(name: "web", descriptor: 4),
                ]))
        #expect(passed?.descriptor(for: "web") == 4)
        #expect(passed?.descriptor(for: "console") == nil)
        #expect(passed?.unmatched(by: ["devices"]) == ["web"])
    }

    @Test func nothingPassedOrMeantForAnotherProcess() throws {
        #expect(try SocketActivation(environment: [:], processID: 42) == nil)
        #expect(
            try SocketActivation(
                environment: ["LISTEN_PID": "41", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "devices"], processID: 42) == nil
        )
    }

    @Test func unnamedOrDoublyNamedSocketsAreErrors() {
        #expect(throws: SocketActivationError.self) {
            try SocketActivation(environment: ["LISTEN_PID": "42", "LISTEN_FDS": "1"], processID: 42)
        }
        #expect(throws: SocketActivationError.self) {
            try SocketActivation(
                environment: ["LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:a"], processID: 42)
        }
        #expect(throws: SocketActivationError.self) {
            try SocketActivation(
                environment: ["LISTEN_PID": "42", "LISTEN_FDS": "x", "LISTEN_FDNAMES": "a"], processID: 42)
        }
    }
}
