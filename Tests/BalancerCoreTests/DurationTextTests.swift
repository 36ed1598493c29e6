import BalancerCore
import Testing

@Suite struct DurationTextTests {
    @Test(arguments: [
        ("500ms", Duration.milliseconds(500)), ("2s", .seconds(2)), ("1.5s", .milliseconds(1500)),
        ("3m", .seconds(180)), ("1h", .seconds(3600)), ("0s", .zero),
    ])
    func acceptsNumbersWithAUnit(text: String, expected: Duration) {
        #expect(DurationText.parse(text) == expected)
    }

    @Test(arguments: ["2", "", "s", "2 s", "-1s", "1d", "1e3s", "ms", "1.2.3s", "99999999999h"])
    func rejectsAnythingElse(text: String) {
        #expect(DurationText.parse(text) == nil)
    }

    @Test func formatsTheWayAPersonWritesIt() {
        #expect(DurationText.format(.seconds(30)) == "30s")
        #expect(DurationText.format(.milliseconds(1500)) == "1500ms")
        #expect(DurationText.format(.seconds(120)) == "2m")
        #expect(DurationText.format(.seconds(7200)) == "2h")
    }
}
