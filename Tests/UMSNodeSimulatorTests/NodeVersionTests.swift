import Testing
import UMSNodeSimulator

@Suite("Version comparison", .timeLimit(.minutes(1)))
struct NodeVersionTests {
    @Test func comparesAsDotSeparatedIntegers() {
        #expect(NodeVersion("12.07.100")! > NodeVersion("12.6.9")!)
        #expect(NodeVersion("12.06.100")! < NodeVersion("12.07.100")!)
        #expect(NodeVersion("12.10")! > NodeVersion("12.9.999")!)
        #expect(NodeVersion("9.1")! < NodeVersion("10.0")!)
    }

    @Test func leadingAndTrailingZerosDoNotMatter() {
        #expect(NodeVersion("12.07.100")! == NodeVersion("12.7.100")!)
        #expect(NodeVersion("12.7")! == NodeVersion("12.7.0")!)
        #expect(Set([NodeVersion("12.7")!, NodeVersion("12.7.0")!]).count == 1)
        #expect(NodeVersion("12.07.100")!.text == "12.07.100")
    }

    @Test(arguments: ["", "12.", ".1", "12..1", "v12", "12.7a", "abc", "12.-1", "99999999999999999999"])
    func rejectsInvalidText(_ text: String) {
        #expect(NodeVersion(text) == nil)
    }
}
