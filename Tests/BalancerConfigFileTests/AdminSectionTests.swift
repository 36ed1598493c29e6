import BalancerConfigFile
import BalancerCore
import Testing

/// `ConfigFile.parseAdmin`: the operator commands read the `admin` section alone.
@Suite struct AdminSectionTests {
    @Test func anUnrelatedMistakeElsewhereDoesNotHideTheAdminSection() throws {
        let text = """
            listeners:
              - { name: d, bind: 127.0.0.1:99999, backend_port: 30001, class: device, colour: red }
            admin: { bind: 127.0.0.1:9900, token_file: admin.token }
            """
        #expect(throws: ConfigErrors.self) { try ConfigFile.parse(text, file: "b.yaml") }
        let admin = try ConfigFile.parseAdmin(text, file: "b.yaml", baseDirectory: "/etc/ums-balancer")
        #expect(
            admin
                == AdminSettings(
                    bind: Endpoint(host: "127.0.0.1", port: 9900), tokenFile: "/etc/ums-balancer/admin.token"))
    }

    @Test func brokenYAMLOutsideTheSectionStillLeavesItReadable() throws {
        let text = """
            nodes:
              - [ums1
            admin:
              bind: 127.0.0.1:9911
            # a comment
            threads: 2
            """
        let admin = try ConfigFile.parseAdmin(text, file: "b.yaml")
        #expect(admin?.bind == Endpoint(host: "127.0.0.1", port: 9911))
        #expect(admin?.tokenFile == nil)
    }

    @Test func aMistakeInTheSectionIsReportedAtItsPlaceInTheFile() {
        let text = """
            nodes:
              - [ums1
            admin:
              bind: 127.0.0.1:99000
            """
        #expect {
            try ConfigFile.parseAdmin(text, file: "b.yaml")
        } throws: { error in
            (error as? ConfigErrors)?.description
                == "b.yaml:4:9: admin bind '127.0.0.1:99000': port 99000 is out of range 1-65535"
        }
    }

    @Test func aFileWithoutAdminSectionHasNone() throws {
        #expect(try ConfigFile.parseAdmin("listeners: []\n", file: "b.yaml") == nil)
    }
}
