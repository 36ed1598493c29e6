import BalancerCore
import Testing

@Suite struct NodeReportTests {
    @Test func readsModeAndVersionAndIgnoresUnknownFields() throws {
        let report = try NodeReport.parse(
            Array(#"{"id":"ums1","mode":"update","version":"12.07.100","extra":[1,2]}"#.utf8))
        #expect(report == NodeReport(mode: .update, version: "12.07.100", id: "ums1"))
    }

    @Test(arguments: [#"{"mode":"sleeping"}"#, #"{"mode":3}"#, #"{"version":"1.2"}"#])
    func aMissingOrInvalidModeIsUnknown(json: String) throws {
        #expect(try NodeReport.parse(Array(json.utf8)).mode == .unknown)
    }

    @Test(arguments: ["garbage", "", "[1,2]", "\"normal\"", "{\"mode\":"])
    func garbageIsAFailedProbe(text: String) {
        #expect(throws: NodeReport.ParseError.self) { try NodeReport.parse(Array(text.utf8)) }
    }

    @Test func anInvalidVersionIsDropped() throws {
        #expect(try NodeReport.parse(Array(#"{"mode":"normal","version":"latest"}"#.utf8)).version == nil)
    }
}

@Suite struct VersionTests {
    @Test func comparesAsDotSeparatedIntegers() throws {
        #expect(try #require(Version("12.07.100")) > #require(Version("12.6.9")))
        #expect(try #require(Version("12.07.100")) == #require(Version("12.7.100")))
        #expect(try #require(Version("12.7")) < #require(Version("12.7.1")))
        #expect(Version("12..1") == nil && Version("a.b") == nil && Version("") == nil)
    }
}

@Suite struct NodeObserverTests {
    func observe(_ outcomes: [ProbeOutcome], readsMode: Bool = true, rise: Int = 2, fall: Int = 3) -> NodeObservation {
        var observer = NodeObserver(rise: rise, fall: fall, readsMode: readsMode)
        var status = NodeObservation()
        for outcome in outcomes { observer.record(outcome, into: &status) }
        return status
    }

    let normal = ProbeOutcome.answered(NodeReport(mode: .normal, version: "12.06.100"))
    let update = ProbeOutcome.answered(NodeReport(mode: .update, version: "12.07.100"))
    let failed = ProbeOutcome.failed("connection refused")

    @Test func anAnswerSetsModeAndVersionAtOnce() {
        let status = observe([normal, update])
        #expect(status.health == .up && status.mode == .update && status.version == "12.07.100")
    }

    @Test func failedProbesKeepTheLastModeUntilFallThenUnknown() {
        #expect(observe([update, failed, failed]).mode == .update)
        #expect(observe([update, failed, failed]).health == .up)
        let down = observe([update, failed, failed, failed])
        #expect(down.health == .down && down.mode == .unknown)
        #expect(down.version == "12.07.100")
    }

    @Test func aProbeFlappingEveryTimeTakesTheNodeDownAndUnknown() {
        let status = observe([normal, failed, normal, failed, normal, failed])
        #expect(status.health == .down)
        #expect(status.mode == .unknown)
        let recovered = observe([normal, failed, normal, failed, normal, failed, normal, normal])
        #expect(recovered.health == .up && recovered.mode == .normal)
    }

    @Test func plainTCPProbesLeaveTheModeAlone() {
        var observer = NodeObserver(rise: 1, fall: 1, readsMode: false)
        var status = NodeObservation(mode: .normal)
        observer.record(.answered(nil), into: &status)
        observer.record(.failed("refused"), into: &status)
        #expect(status.health == .down && status.mode == .normal)
    }
}
