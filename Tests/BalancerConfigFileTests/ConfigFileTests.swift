import BalancerConfigFile
import BalancerCore
import Testing

@Suite struct ConfigFileTests {
    let valid = """
        listeners:
          - name: devices
            bind: 0.0.0.0:30001
            backend_port: 30001
            class: device
          - name: console
            bind: "[::1]:8444"
            backend_port: 8443
            class: console
            balance: source
        nodes:
          - { id: ums1, host: 10.0.0.11 }
          - { id: ums2, host: ums2.example.com }
        health: { interval: 500ms, timeout: 1s, rise: 1, fall: 2 }
        timeouts: { connect: 2s, idle: 10m }
        threads: 1
        shutdown_grace: 5s
        update: { console: freeze, drain_timeout: 1m, install_timeout: 45m, max_duration: 2h, drain_rate: 50 }
        status: { url: "http://{host}:9901/status" }
        reconnect: { command: [/usr/local/bin/reconnect, "{id}"], retries: 2, max_unavailable: 2 }
        state: { path: state/balancer.sqlite }
        admin: { bind: 127.0.0.1:9900, token_file: admin.token }
        """

    func errors(_ text: String) -> [String] {
        do {
            _ = try ConfigFile.parse(text, file: "b.yaml", baseDirectory: "/etc/ums")
            return []
        } catch {
            return error.errors.map(\.description)
        }
    }

    @Test func readsEveryKey() throws {
        let config = try ConfigFile.parse(valid, file: "b.yaml", baseDirectory: "/etc/ums")
        #expect(config.listeners.map(\.name) == ["devices", "console"])
        #expect(config.listeners[0].bind == Endpoint(host: "0.0.0.0", port: 30001))
        #expect(config.listeners[0].classification == .fixed(.device))
        #expect(config.listeners[0].balance == .leastConnections)
        #expect(config.listeners[1].bind == Endpoint(host: "::1", port: 8444))
        #expect(config.listeners[1].balance == .source)
        #expect(
            config.nodes == [
                NodeConfiguration(id: "ums1", host: "10.0.0.11"),
                NodeConfiguration(id: "ums2", host: "ums2.example.com"),
            ])
        #expect(config.health.interval == .milliseconds(500))
        #expect(config.health.fall == 2)
        #expect(config.timeouts.idle == .seconds(600))
        #expect(config.threads == 1)
        #expect(config.shutdownGrace == .seconds(5))
        #expect(config.update.console == .freeze)
        #expect(config.update.installTimeout == .seconds(45 * 60))
        #expect(config.update.maxDuration == .seconds(2 * 3600))
        #expect(config.status?.action == .url("http://{host}:9901/status"))
        #expect(config.reconnect?.action == .command(["/usr/local/bin/reconnect", "{id}"]))
        #expect(config.reconnect?.retries == 2)
        #expect(config.reconnect?.maxUnavailable == 2)
        #expect(config.update.drainRate == 50)
        #expect(config.state?.path == "/etc/ums/state/balancer.sqlite")
        #expect(config.admin?.tokenFile == "/etc/ums/admin.token")
    }

    @Test func defaultsFillWhatIsLeftOut() throws {
        let config = try ConfigFile.parse(
            "listeners: [{name: d, bind: 127.0.0.1:30001, backend_port: 30001, class: console}]\nnodes: [{id: a, host: 127.0.0.11}]",
            file: "b.yaml")
        #expect(config.health == HealthSettings())
        #expect(config.timeouts == TimeoutSettings())
        #expect(config.threads == nil)
        #expect(config.shutdownGrace == .seconds(30))
        #expect(config.update.installTimeout == .seconds(30 * 60) && config.update.maxDuration == .seconds(4 * 3600))
        #expect(config.update.drainRate == nil, "by default the reconnect cuts what is left at once")
        #expect(config.listeners[0].algorithm(for: .console) == .source)
        #expect(config.healthPort == 30001)
        #expect(config.status == nil && config.admin == nil)
    }

    @Test(arguments: [
        (
            "listeners: []\nnodes: []\nfoo: 1\n",
            [
                "b.yaml:1:12: listeners must name at least one listener",
                "b.yaml:2:8: nodes must name at least one node",
                "b.yaml:3:1: unknown key 'foo' in the configuration (expected one of: admin, health, install, limits, listeners, nodes, reconnect, shutdown_grace, state, status, threads, timeouts, update)",
            ]
        ),
        (
            "nodes:\n  - { id: a, host: 10.0.0.1 }\n",
            ["b.yaml:1:1: the configuration is missing required key 'listeners'"]
        ),
        (
            """
            listeners:
              - name: d
                bind: 0.0.0.0:70000
                backend_port: 0
                class: devices
            nodes: [{ id: a, host: 10.0.0.1 }]
            """,
            [
                "b.yaml:3:11: bind '0.0.0.0:70000': port 70000 is out of range 1-65535",
                "b.yaml:4:19: backend_port 0 is out of range 1-65535",
                "b.yaml:5:12: class 'devices' is not one of: device, console, by-sni, by-path",
            ]
        ),
        (
            """
            listeners:
              - { name: a, bind: 0.0.0.0:30001, backend_port: 30001, class: device }
              - { name: a, bind: 127.0.0.1:30002, backend_port: 30001, class: device }
              - { name: b, bind: 127.0.0.1:30001, backend_port: 30001, class: device }
            nodes: [{ id: a, host: 10.0.0.1 }]
            """,
            [
                "b.yaml:3:13: duplicate listener name 'a'",
                "b.yaml:4:22: bind 127.0.0.1:30001 overlaps listener 'a' (0.0.0.0:30001)",
            ]
        ),
        (
            """
            listeners: [{ name: a, bind: ums:30001, backend_port: 30001, class: device, speed: 3 }]
            nodes:
              - { id: ums1, host: 10.0.0.1 }
              - { id: ums1, host: 10.0.0.2 }
              - { id: ums3, host: "10.0.0.1" }
              - { id: "bad id", host: "-bad-" }
            """,
            [
                "b.yaml:1:30: bind 'ums:30001': 'ums' is not an IP address (write IPv6 as [::1]:PORT)",
                "b.yaml:1:77: unknown key 'speed' in a listener (expected one of: backend_port, backend_tls, balance, bind, class, handshake_timeout, http, max_connection_rate, max_connections, name, paths, proxy_protocol, send_proxy, sni, tls)",
                "b.yaml:4:11: duplicate node id 'ums1'",
                "b.yaml:5:23: node 'ums3' has the same host as node 'ums1' (10.0.0.1)",
                "b.yaml:6:11: node id 'bad id' may only hold letters, digits, '.', '_' and '-' (at most 64)",
                "b.yaml:6:27: host '-bad-' is neither an IP address nor a host name",
            ]
        ),
        (
            """
            listeners: [{ name: a, bind: 127.0.0.1:1, backend_port: 1, class: device }]
            nodes: [{ id: a, host: 10.0.0.1 }]
            health: { interval: 2, timeout: soon, rise: 0 }
            timeouts: { connect: 1d }
            threads: many
            shutdown_grace: -1s
            """,
            [
                "b.yaml:3:21: health interval '2' is not a duration (a number with ms, s, m or h, e.g. 500ms, 2s)",
                "b.yaml:3:33: health timeout 'soon' is not a duration (a number with ms, s, m or h, e.g. 500ms, 2s)",
                "b.yaml:3:45: health rise 0 is out of range 1-100",
                "b.yaml:4:22: connect timeout '1d' is not a duration (a number with ms, s, m or h, e.g. 500ms, 2s)",
                "b.yaml:5:10: threads must be a whole number, not 'many'",
                "b.yaml:6:17: shutdown_grace '-1s' is not a duration (a number with ms, s, m or h, e.g. 500ms, 2s)",
            ]
        ),
        (
            "listeners: [\n",
            ["b.yaml:2:1: YAML syntax: did not find expected node content"]
        ),
        (
            "listeners: 1\nlisteners: 2\n",
            ["b.yaml:1:1: duplicate key 'listeners'"]
        ),
        (
            """
            listeners: [{ name: a, bind: 127.0.0.1:1, backend_port: 1, class: device }]
            nodes: [{ id: a, host: 10.0.0.1 }]
            status: { url: "ftp://x", command: [a] }
            reconnect: { timeout: 1s }
            update: { console: never }
            admin: { token_file: t }
            """,
            [
                "b.yaml:3:27: status takes either 'url' or 'command', not both",
                "b.yaml:4:12: reconnect needs 'url' or 'command'",
                "b.yaml:5:20: update console 'never' is not one of: normal-only, freeze, allow",
                "b.yaml:6:8: admin is missing required key 'bind'",
            ]
        ),
        (
            """
            listeners: [{ name: a, bind: 127.0.0.1:1, backend_port: 1, class: device }]
            nodes: [{ id: a, host: 10.0.0.1 }]
            update: { install_timeout: 30, max_duration: 500ms, deadline: 1h, drain_rate: 0 }
            reconnect: { url: "http://{host}:9901/control/reconnect", max_unavailable: 0 }
            """,
            [
                "b.yaml:3:28: install_timeout '30' is not a duration (a number with ms, s, m or h, e.g. 500ms, 2s)",
                "b.yaml:3:46: max_duration must be at least 1s",
                "b.yaml:3:53: unknown key 'deadline' in update (expected one of: canary_connections, canary_timeout, console, drain_rate, drain_timeout, install_timeout, max_duration, slow_start)",
                "b.yaml:3:79: update drain_rate 0 is out of range 1-1000000",
                "b.yaml:4:76: reconnect max_unavailable 0 is out of range 1-1000",
            ]
        ),
    ])
    func reportsEveryProblemWithFileLineAndColumn(text: String, expected: [String]) {
        #expect(errors(text) == expected)
    }

    @Test func readsSNIRules() throws {
        let config = try ConfigFile.parse(
            """
            listeners:
              - name: web
                bind: 0.0.0.0:8443
                backend_port: 8443
                class: by-sni
                handshake_timeout: 2s
                sni: { console: [UMS-Console.example.com, "*.admin.example.com"], default: device }
            nodes: [{ id: a, host: 10.0.0.1 }]
            """, file: "b.yaml")
        let listener = try #require(config.listeners.first)
        #expect(listener.handshakeTimeout == .seconds(2))
        guard case .bySNI(let rules) = listener.classification else {
            Issue.record("not by-sni")
            return
        }
        #expect(rules.defaultClass == .device)
        #expect(rules.classify("ums-console.example.com") == .console)
        #expect(rules.classify("x.admin.example.com") == .console)
        #expect(listener.algorithm(for: .console) == .source)
        #expect(listener.algorithm(for: .device) == .leastConnections)
    }

    @Test func reportsSNIAndBalanceMistakes() {
        #expect(
            errors(
                """
                listeners:
                  - { name: a, bind: 0.0.0.0:1, backend_port: 1, class: by-sni, sni: { console: ["bad name", x.com, x.com] } }
                  - { name: b, bind: 0.0.0.0:2, backend_port: 1, class: console, balance: round-robin }
                  - { name: c, bind: 0.0.0.0:3, backend_port: 1, class: device, sni: { default: device } }
                  - { name: d, bind: 0.0.0.0:4, backend_port: 1, class: by-sni }
                nodes: [{ id: a, host: 10.0.0.1 }]
                """) == [
                    "b.yaml:2:82: server name 'bad name' is neither a host name nor *.domain",
                    "b.yaml:2:101: server name 'x.com' is already listed under console",
                    "b.yaml:3:75: a console listener always balances by client address (source): sessions are per server",
                    "b.yaml:4:65: 'sni' only applies to class by-sni",
                    "b.yaml:5:5: a by-sni listener is missing required key 'sni'",
                ])
    }

    @Test func sniDefaultIsConsoleUnlessSetSoANamelessConsoleNeverReachesAnUpdateModeNode() throws {
        let config = try ConfigFile.parse(
            """
            listeners:
              - { name: web, bind: 0.0.0.0:8443, backend_port: 8443, class: by-sni, sni: { device: [dev.example.com] } }
            nodes: [{ id: a, host: 10.0.0.1 }]
            """, file: "b.yaml")
        guard case .bySNI(let rules) = try #require(config.listeners.first).classification else {
            Issue.record("not by-sni")
            return
        }
        #expect(rules.defaultClass == .console)
        #expect(rules.classify(nil) == .console)
        #expect(rules.classify("10.0.0.5") == .console)
        #expect(rules.classify("dev.example.com") == .device)
    }

    @Test func everyConfigurationThatCanSendAConsoleToAnUpdateModeNodeIsWarnedAbout() throws {
        let checked = try ConfigFile.check(
            """
            listeners:
              - { name: web, bind: 0.0.0.0:8443, backend_port: 8443, class: by-sni, sni: { default: device } }
              - { name: plain, bind: 0.0.0.0:8444, backend_port: 8443, class: device }
              - { name: devices, bind: 0.0.0.0:30001, backend_port: 30001, class: device }
            nodes: [{ id: a, host: 10.0.0.1 }]
            update: { console: allow }
            """, file: "b.yaml", baseDirectory: "/etc/ums")
        #expect(
            checked.warnings.map(\.description) == [
                "b.yaml:2:89: warning: sni default 'device': a connection with no server name or an unlisted one (a"
                    + " console that connects by IP address, say) may reach a node in update mode; leave 'default' out"
                    + " (console) unless devices send no name",
                "b.yaml:3:67: warning: class 'device' on backend port 8443 (the UMS web port, where consoles log in"
                    + " too): console logins through this listener may reach nodes in update mode; use by-sni or by-path",
                "b.yaml:6:20: warning: update console 'allow': console logins may reach nodes in update mode, whose"
                    + " changes UMS discards when they reconnect to the productive database",
            ])
    }

    @Test func theSafeDefaultsAreNotWarnedAbout() throws {
        let checked = try ConfigFile.check(
            """
            listeners:
              - { name: web, bind: 0.0.0.0:8443, backend_port: 8443, class: by-sni, sni: { console: [c.example.com] } }
              - { name: devices, bind: 0.0.0.0:30001, backend_port: 30001, class: device }
            nodes: [{ id: a, host: 10.0.0.1 }]
            update: { console: normal-only }
            """, file: "b.yaml")
        #expect(checked.warnings.isEmpty)
    }

    @Test func anEmptyFileSaysWhatIsRequired() {
        #expect(errors("") == ["b.yaml:1:1: the file is empty: 'listeners' and 'nodes' are required"])
    }

    @Test func aMissingFileIsAnErrorAtItsName() {
        #expect(throws: ConfigErrors.self) { try ConfigFile.load(path: "/nonexistent/ums.yaml") }
        do {
            _ = try ConfigFile.load(path: "/nonexistent/ums.yaml")
        } catch {
            #expect(error.description == "/nonexistent/ums.yaml:1:1: no such file")
        }
    }

    @Test(arguments: ["/dev/zero", "/dev/null", "/tmp"])
    func aDeviceOrADirectoryNamedAsTheFileIsRefusedNotReadForever(path: String) {
        #expect(throws: ConfigErrors.self) { try ConfigFile.check(path: path) }
        do {
            _ = try ConfigFile.check(path: path)
        } catch {
            #expect(error.description == "\(path):1:1: not a regular file")
        }
    }
}

@Suite struct NodeLimitConfigTests {
    func parse(_ node: String) throws -> BalancerConfiguration {
        try ConfigFile.parse(
            """
            listeners:
              - { name: devices, bind: 0.0.0.0:30001, backend_port: 30001, class: device }
            nodes:
              - \(node)
            """, file: "b.yaml")
    }

    @Test func aNodeMayCapItsConnections() throws {
        #expect(try parse("{ id: ums1, host: 10.0.0.11, max_connections: 5000 }").nodes[0].maxConnections == 5000)
        #expect(try parse("{ id: ums1, host: 10.0.0.11 }").nodes[0].maxConnections == nil)
    }

    @Test func aCapThatIsNoPositiveNumberSaysWhere() {
        #expect(throws: ConfigErrors.self) { try parse("{ id: ums1, host: 10.0.0.11, max_connections: 0 }") }
        let error = #expect(throws: ConfigErrors.self) {
            try parse("{ id: ums1, host: 10.0.0.11, max_connections: lots }")
        }
        #expect(error?.description == "b.yaml:4:51: node 'ums1' max_connections must be a whole number, not 'lots'")
    }

    @Test func changingACapIsNoAddressChange() {
        var old = BalancerConfiguration(listeners: [], nodes: [NodeConfiguration(id: "ums1", host: "10.0.0.11")])
        var new = old
        new.nodes[0].maxConnections = 10
        let diff = ConfigurationDiff(from: old, to: new)
        #expect(diff.changedNodes.isEmpty, "the node keeps its state")
        #expect(diff.limitedNodes.map(\.id) == ["ums1"])
        old = new
        #expect(ConfigurationDiff(from: old, to: new).isEmpty)
    }
}

@Suite struct LimitsConfigTests {
    func parse(_ extra: String, listener: String = "") throws -> BalancerConfiguration {
        try ConfigFile.parse(
            """
            listeners:
              - { name: devices, bind: 0.0.0.0:30001, backend_port: 30001, class: device\(listener) }
            nodes:
              - { id: ums1, host: 10.0.0.11 }
            \(extra)
            """, file: "b.yaml")
    }

    @Test func limitsPassiveHealthAndListenerCapsAreRead() throws {
        let configuration = try parse(
            """
            limits: { max_connections: 40000, queue_timeout: 2s }
            health: { passive: { failures: 5, ejection: 30s, max_ejection: 10m } }
            """, listener: ", max_connections: 20000, max_connection_rate: 500")
        #expect(configuration.limits.maxConnections == 40000)
        #expect(configuration.limits.queueTimeout == .seconds(2))
        #expect(configuration.health.passive.failures == 5)
        #expect(configuration.health.passive.ejection == .seconds(30))
        #expect(configuration.health.passive.maxEjection == .seconds(600))
        #expect(configuration.listeners[0].maxConnections == 20000)
        #expect(configuration.listeners[0].maxConnectionRate == 500)
    }

    @Test func defaultsLeaveOnlyPassiveHealthOn() throws {
        let configuration = try parse("")
        #expect(configuration.limits.maxConnections == nil)
        #expect(configuration.limits.queueTimeout == .seconds(5))
        #expect(configuration.health.passive.failures == 3)
        #expect(configuration.listeners[0].maxConnections == nil)
    }

    @Test func aMaximumEjectionShorterThanTheFirstIsAnError() {
        let error = #expect(throws: ConfigErrors.self) {
            try parse("health: { passive: { ejection: 1m, max_ejection: 10s } }")
        }
        #expect(error?.description == "b.yaml:5:50: health passive max_ejection must be at least its ejection")
    }
}
