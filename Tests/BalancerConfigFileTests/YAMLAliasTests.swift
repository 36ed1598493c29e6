import Testing

@testable import BalancerConfigFile

/// Anchors and aliases are refused before composing, so checking any file is linear in its size.
@Suite(.timeLimit(.minutes(1)))
struct YAMLAliasTests {
    func errors(_ text: String) -> [String] {
        do {
            _ = try ConfigFile.parse(text, file: "b.yaml", baseDirectory: "/etc/ums")
            return []
        } catch {
            return error.errors.map(\.description)
        }
    }

    /// Nine levels, each a list of nine aliases to the one below, used as a mapping key.
    static let aliasBomb: String = {
        var lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
        for level in 1...9 {
            let below = Array(repeating: "*a\(level - 1)", count: 9).joined(separator: ", ")
            lines.append("a\(level): &a\(level) [\(below)]")
        }
        lines.append("? *a9\n: boom")
        return lines.joined(separator: "\n") + "\n"
    }()

    @Test func anAliasBombIsRefusedAtItsFirstAnchorAtOnce() {
        let started = ContinuousClock.now
        #expect(
            errors(Self.aliasBomb) == [
                "b.yaml:1:5: YAML anchors are not supported: write the value out where it is used"
            ])
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test func anAliasIsNamedWhereItStands() {
        let text = """
            listeners:
              - { name: d, bind: 0.0.0.0:30001, backend_port: 30001, class: device }
            nodes:
              - { id: ums1, host: 10.0.0.11, port: *devices }
            """
        #expect(errors(text) == ["b.yaml:4:40: YAML aliases are not supported: write the value out where it is used"])
    }

    @Test func ampersandsAndAsterisksInCommentsQuotesAndBlocksAreText() throws {
        let text = """
            # a comment with &anchor and *alias
            listeners:
              - name: d   # *not an alias
                bind: 0.0.0.0:30001
                backend_port: 30001
                class: device
            nodes:
              - id: ums1
                host: 10.0.0.11
            status: { url: 'http://{host}:9901/status?a=&b=*c&it''s' }
            """
        let configuration = try ConfigFile.parse(text, file: "b.yaml", baseDirectory: "/etc/ums")
        #expect("\(String(describing: configuration.status?.action))".contains("a=&b=*c&it's"))
        #expect(YAMLAliasScan.first(in: "a: \"x \\\" &y\"\nb: |\n  *literal\n  &text\nc: plain&text*") == nil)
        #expect(
            YAMLAliasScan.first(in: "a: |\n  *literal\nb: *c") == YAMLAliasScan.Found(line: 3, column: 4, kind: "alias")
        )
        #expect(YAMLAliasScan.first(in: "a: [x, &y z]") == YAMLAliasScan.Found(line: 1, column: 8, kind: "anchor"))
    }
}
