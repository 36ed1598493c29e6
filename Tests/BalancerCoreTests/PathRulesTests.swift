import BalancerCore
import Testing

@Suite struct PathRulesTests {
    @Test(arguments: [
        ("/device-connector/device/00E0C5000001/profile", TrafficClass.device),
        ("/device-connector/device/ws-connect?token=1", .device),
        ("/console/login", .console),
        ("/webapp/", .console),
        ("/device-connector", .console),
        ("https://ums.example.com/device-connector/x", .device),
        ("/device-connector/../console/login", .console),
        ("/device-connector/%2e%2e/console/login", .console),
        ("/device-connector/..%2Fconsole", .console),
        ("*", .console),
    ])
    func standardRulesSendDeviceConnectorToDevicesAndTheRestToConsole(target: String, expected: TrafficClass) {
        #expect(PathRules.standard.classify(target: target) == expected)
    }

    @Test func theLongestPrefixWins() {
        let rules = PathRules(
            prefixes: [.device: ["/api/", "/api/devices/public/"], .console: ["/api/devices/"]], defaultClass: .console)
        #expect(rules.classify(target: "/api/status") == .device)
        #expect(rules.classify(target: "/api/devices/1") == .console)
        #expect(rules.classify(target: "/api/devices/public/1") == .device)
        #expect(rules.classify(target: "/other") == .console)
    }

    @Test func theAmbiguityCheckAgreesWithTheObviousOneOnRandomPaths() {
        // The obvious reading (copies the path twice), against which the one-pass scan is checked.
        func obvious(_ path: String) -> Bool {
            let lowered = path.lowercased()
            if lowered.contains("%2e") || lowered.contains("%2f") || lowered.contains("%5c") || lowered.contains("\\") {
                return true
            }
            return path.split(separator: "/", omittingEmptySubsequences: false).contains { $0 == "." || $0 == ".." }
        }
        let alphabet = Array("/./%2eEfF5cC\\ax")
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let path =
                "/"
                + String(
                    (0..<Int.random(in: 0..<12, using: &generator)).map { _ in
                        alphabet.randomElement(using: &generator)!
                    })
            let rules = PathRules(prefixes: [:], defaultClass: .device)
            #expect((rules.classify(target: path) == .console) == obvious(path), "\(path)")
        }
    }

    @Test func aDeviceDefaultStillSendsAmbiguousPathsToConsole() {
        let rules = PathRules(prefixes: [.console: ["/console/"]], defaultClass: .device)
        #expect(rules.classify(target: "/x/y") == .device)
        #expect(rules.classify(target: "/x/../console/login") == .console)
    }
}

@Suite struct RefusalPageTests {
    @Test func refusalTextNamesTheUpdate() {
        // Three servers in update mode by override, one of them on the target version: /status says 1 of 3.
        var refusal = Refusal(
            trafficClass: .console,
            reasons: [("ums1", .mode(.update)), ("ums2", .mode(.update)), ("ums3", .mode(.installing))],
            update: UpdateProgress(updated: 1, total: 3))
        #expect(
            RefusalPage.text(for: refusal)
                == "all servers in update mode: console logins are paused until the update completes (1 of 3 servers updated)"
        )
        refusal.update = nil
        #expect(
            RefusalPage.text(for: refusal)
                == "all servers in update mode: console logins are paused until the update completes")
    }

    @Test func aServerDrainedForItsInstallCountsAsOneOnItsWayIntoTheUpdate() {
        // A driven update drains the last normal server before installing it: the update, not a fault.
        let refusal = Refusal(
            trafficClass: .console,
            reasons: [("ums1", .mode(.update)), ("ums2", .drainingForInstall), ("ums3", .mode(.installing))],
            update: UpdateProgress(updated: 1, total: 3))
        #expect(
            RefusalPage.text(for: refusal)
                == "all servers in update mode: console logins are paused until the update completes (1 of 3 servers updated)"
        )
    }

    @Test func everyNodeFailedNamesTheNodesAndHowTheyFailed() {
        let text = RefusalPage.text(
            for: .everyNodeFailed(
                .device, [NodeFailure(node: "ums1", kind: .refused), NodeFailure(node: "ums2", kind: .timedOut)]))
        #expect(
            text == "no UMS server answered: ums1 connection refused, ums2 connect timed out; try again in a moment")
    }
}
