import BalancerConfigFile
import BalancerCore
import Testing

/// `install` (top level or per node) and the canary gate of a driven update.
@Suite struct InstallSectionTests {
    let head = """
        listeners: [{ name: a, bind: 127.0.0.1:1, backend_port: 1, class: device }]

        """

    @Test func aNodesOwnInstallWinsOverTheTopLevelOne() throws {
        let config = try ConfigFile.parse(
            head + """
                nodes:
                  - { id: ums1, host: 10.0.0.11 }
                  - { id: ums2, host: 10.0.0.12, install: { command: [/usr/local/bin/install-ums, "{host}", "{version}"] } }
                install: { url: "http://{host}:9901/control/install?version={version}", timeout: 20s }
                update: { canary_connections: 0, canary_timeout: 2m }
                """, file: "b.yaml")
        var top = InstallSettings(action: .url("http://{host}:9901/control/install?version={version}"))
        top.timeout = .seconds(20)
        #expect(config.install(for: "ums1") == top)
        #expect(
            config.install(for: "ums2")
                == InstallSettings(action: .command(["/usr/local/bin/install-ums", "{host}", "{version}"])))
        #expect(config.update.canaryConnections == 0)
        #expect(config.update.canaryTimeout == .seconds(120))
        let defaults = try ConfigFile.parse(head + "nodes: [{ id: a, host: 10.0.0.1 }]", file: "b.yaml")
        #expect(defaults.install(for: "a") == nil)
        #expect(defaults.update.canaryConnections == 20 && defaults.update.canaryTimeout == .seconds(600))
    }

    @Test func mistakesAreReportedWithFileLineAndColumn() {
        let text =
            head + """
                nodes: [{ id: a, host: 10.0.0.1, install: { url: "ftp://x/{version}" } }]
                install: { url: "http://{host}/i?v={version}", command: [x], timeout: 0s }
                update: { canary_connections: -1, canary_timeout: 10ms }
                """
        #expect(
            collect(text) == [
                "b.yaml:2:50: node 'a' install url 'ftp://x/{version}' must start with http:// or https://",
                "b.yaml:3:48: install takes either 'url' or 'command', not both",
                "b.yaml:4:31: update canary_connections -1 is out of range 0-1000000",
                "b.yaml:4:51: update canary_timeout must be at least 1s",
            ])
    }

    @Test func anInstallThatNamesNoVersionIsAWarning() throws {
        let checked = try ConfigFile.check(
            head + """
                nodes: [{ id: a, host: 10.0.0.1 }]
                install: { command: [/usr/local/bin/install-ums, "{host}"] }
                """, file: "b.yaml")
        #expect(
            checked.warnings.map(\.description) == [
                "b.yaml:3:21: warning: install names no {version}: the installer is not told which version the update"
                    + " started with (ums-balancer update start --version)"
            ])
    }

    func collect(_ text: String) -> [String] {
        do {
            _ = try ConfigFile.parse(text, file: "b.yaml")
            return []
        } catch {
            return error.errors.map(\.description)
        }
    }
}
