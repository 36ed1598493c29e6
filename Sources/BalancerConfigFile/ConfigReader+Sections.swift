import BalancerCore
import Yams

extension ConfigReader {
    static let topLevelKeys: Set<String> = [
        "listeners", "nodes", "health", "timeouts", "threads", "shutdown_grace",
        "status", "reconnect", "update", "state", "admin", "limits", "install",
    ]

    mutating func configuration(_ root: Node?) -> BalancerConfiguration? {
        guard let root else {
            fail(nil, "the file is empty: 'listeners' and 'nodes' are required")
            return nil
        }
        guard let entries = mapping(root, "the configuration", allowed: Self.topLevelKeys) else { return nil }
        let listeners = required(entries, "listeners", in: root, "the configuration").flatMap { listenerList($0) }
        let nodes = required(entries, "nodes", in: root, "the configuration").flatMap { nodeList($0) }
        var configuration = BalancerConfiguration(listeners: listeners ?? [], nodes: nodes ?? [])
        if let node = entries["health"]?.value, let health = health(node) { configuration.health = health }
        if let node = entries["timeouts"]?.value, let timeouts = timeouts(node) { configuration.timeouts = timeouts }
        if let node = entries["limits"]?.value, let limits = limits(node) { configuration.limits = limits }
        if let node = entries["threads"]?.value { configuration.threads = integer(node, "threads", in: 1...256) }
        if let node = entries["shutdown_grace"]?.value,
            let grace = duration(node, "shutdown_grace", atLeast: .zero)
        {
            configuration.shutdownGrace = grace
        }
        if let node = entries["status"]?.value {
            configuration.status = nodeAction(node, "status", extraKeys: ["timeout"]).map { action, entries in
                StatusProbeSettings(
                    action: action, timeout: entries["timeout"].flatMap { duration($0.value, "status timeout") })
            }
        }
        if let node = entries["reconnect"]?.value { configuration.reconnect = reconnect(node) }
        if let node = entries["install"]?.value { configuration.install = install(node, "install") }
        if let node = entries["update"]?.value, let update = update(node) { configuration.update = update }
        if let node = entries["state"]?.value,
            let section = mapping(node, "state", allowed: ["path"]),
            let pathNode = required(section, "path", in: node, "state"),
            let path = path(pathNode, "state path")
        {
            configuration.state = StateSettings(path: path)
        }
        if let node = entries["admin"]?.value { configuration.admin = admin(node) }
        return listeners == nil || nodes == nil ? nil : configuration
    }

    // MARK: - Listeners

    private mutating func listenerList(_ node: Node) -> [ListenerConfiguration]? {
        guard let items = sequence(node, "listeners") else { return nil }
        if items.isEmpty { fail(node, "listeners must name at least one listener") }
        var listeners: [ListenerConfiguration] = []
        var names: [String: Node] = [:]
        var binds: [(endpoint: Endpoint, name: String)] = []
        for item in items {
            guard let listener = listener(item) else { continue }
            let entries = mappingEntries(item)
            if names[listener.name] != nil {
                fail(entries["name"] ?? item, "duplicate listener name '\(listener.name)'")
                continue
            }
            names[listener.name] = item
            if let clash = binds.first(where: { Self.overlap($0.endpoint, listener.bind) }) {
                fail(
                    entries["bind"] ?? item,
                    "bind \(listener.bind) overlaps listener '\(clash.name)' (\(clash.endpoint))")
                continue
            }
            binds.append((listener.bind, listener.name))
            listeners.append(listener)
        }
        return listeners
    }

    private mutating func listener(_ node: Node) -> ListenerConfiguration? {
        let keys: Set<String> = [
            "name", "bind", "backend_port", "class", "balance", "sni", "handshake_timeout", "tls", "backend_tls",
            "paths", "http", "max_connections", "max_connection_rate", "proxy_protocol", "send_proxy",
        ]
        guard let entries = mapping(node, "a listener", allowed: keys) else { return nil }
        let name = required(entries, "name", in: node, "a listener").flatMap { self.name($0, "listener name") }
        let what = "listener '\(name ?? "?")'"
        let bind = required(entries, "bind", in: node, what).flatMap { bindAddress($0, "bind") }
        let backendPort = required(entries, "backend_port", in: node, what).flatMap { port($0, "backend_port") }
        let classification = required(entries, "class", in: node, what).flatMap { listenerClass($0, entries, in: node) }
        let balance = entries["balance"].flatMap { choice($0.value, "balance", as: BalanceAlgorithm.self) }
        if classification == .fixed(.device), let backendPort, Self.webPorts.contains(backendPort),
            let entry = entries["class"]
        {
            warn(
                entry.value,
                "class 'device' on backend port \(backendPort) (the UMS web port, where consoles log in too): console"
                    + " logins through this listener may reach nodes in update mode; use by-sni or by-path")
        }
        if let balance, balance != .source, classification == .fixed(.console), let entry = entries["balance"] {
            fail(entry.value, "a console listener always balances by client address (source): sessions are per server")
        }
        let handshakeTimeout = entries["handshake_timeout"].flatMap { duration($0.value, "handshake_timeout") }
        guard let name, let bind, let backendPort, let classification else { return nil }
        var listener = ListenerConfiguration(
            name: name, bind: bind, backendPort: backendPort, classification: classification,
            balance: balance ?? .leastConnections)
        if let handshakeTimeout { listener.handshakeTimeout = handshakeTimeout }
        listener.maxConnections = entries["max_connections"].flatMap {
            integer($0.value, "\(what) max_connections", in: 1...10_000_000)
        }
        listener.maxConnectionRate = entries["max_connection_rate"].flatMap {
            integer($0.value, "\(what) max_connection_rate", in: 1...10_000_000)
        }
        if let entry = entries["proxy_protocol"] { listener.proxyProtocolFrom = proxyProtocol(entry.value, what) }
        if let entry = entries["send_proxy"], let text = string(entry.value, "\(what) send_proxy") {
            switch text {
            case "v1": listener.sendProxy = 1
            case "v2": listener.sendProxy = 2
            default: fail(entry.value, "\(what) send_proxy '\(text)' is not one of: v1, v2")
            }
        }
        return listener
    }

    /// `proxy_protocol: { from: [CIDR, ...] }`.
    private mutating func proxyProtocol(_ node: Node, _ what: String) -> [AddressRange]? {
        guard let entries = mapping(node, "\(what) proxy_protocol", allowed: ["from"]),
            let fromNode = required(entries, "from", in: node, "\(what) proxy_protocol"),
            let items = sequence(fromNode, "\(what) proxy_protocol from")
        else { return nil }
        if items.isEmpty { fail(fromNode, "\(what) proxy_protocol from must list at least one address or range") }
        var ranges: [AddressRange] = []
        for item in items {
            guard let text = string(item, "\(what) proxy_protocol from") else { continue }
            guard let range = AddressRange(text) else {
                fail(item, "\(what) proxy_protocol from '\(text)' is not an address or CIDR range (e.g. 10.0.0.0/24)")
                continue
            }
            ranges.append(range)
        }
        return ranges
    }

    private mutating func listenerClass(_ node: Node, _ entries: [String: Entry], in listener: Node)
        -> ListenerClassification?
    {
        guard let text = string(node, "class") else { return nil }
        if text != "by-sni", let sni = entries["sni"] {
            fail(sni.keyNode, "'sni' only applies to class by-sni")
        }
        if text != "by-path" {
            for key in ["tls", "backend_tls", "paths", "http"] {
                if let entry = entries[key] { fail(entry.keyNode, "'\(key)' only applies to class by-path") }
            }
        }
        switch text {
        case "device": return .fixed(.device)
        case "console": return .fixed(.console)
        case "by-sni":
            guard let sni = required(entries, "sni", in: listener, "a by-sni listener") else { return nil }
            return sniRules(sni).map(ListenerClassification.bySNI)
        case "by-path":
            return pathListener(entries, in: listener).map(ListenerClassification.byPath)
        default:
            fail(node, "class '\(text)' is not one of: device, console, by-sni, by-path")
            return nil
        }
    }

    /// Ports where a UMS Server serves the Console, the Web App and the REST API (and OS 12 devices).
    static let webPorts: Set<Int> = [443, 8443]

    private mutating func sniRules(_ node: Node) -> SNIRules? {
        guard let entries = mapping(node, "sni", allowed: ["console", "device", "default"]) else { return nil }
        var patterns: [TrafficClass: [String]] = [:]
        var seen: [String: TrafficClass] = [:]
        for trafficClass in TrafficClass.allCases {
            guard let list = entries[trafficClass.rawValue] else { continue }
            guard let items = sequence(list.value, "sni \(trafficClass)") else { continue }
            for item in items {
                guard let pattern = string(item, "server name")?.lowercased() else { continue }
                let bare = pattern.hasPrefix("*.") ? String(pattern.dropFirst(2)) : pattern
                guard Self.isHostName(bare) else {
                    fail(item, "server name '\(pattern)' is neither a host name nor *.domain")
                    continue
                }
                if let other = seen[pattern] {
                    fail(item, "server name '\(pattern)' is already listed under \(other)")
                    continue
                }
                seen[pattern] = trafficClass
                patterns[trafficClass, default: []].append(pattern)
            }
        }
        // Console safety by default: a console that connects by IP address sends no server name.
        guard let entry = entries["default"] else { return SNIRules(patterns: patterns, defaultClass: .console) }
        let defaultClass = choice(entry.value, "sni default", as: TrafficClass.self)
        if defaultClass == .device {
            warn(
                entry.value,
                "sni default 'device': a connection with no server name or an unlisted one (a console that connects"
                    + " by IP address, say) may reach a node in update mode; leave 'default' out (console) unless"
                    + " devices send no name")
        }
        return defaultClass.map { SNIRules(patterns: patterns, defaultClass: $0) }
    }

    static func isHostName(_ text: String) -> Bool {
        let labels = text.split(separator: ".", omittingEmptySubsequences: false)
        return text.count <= 253 && !labels.isEmpty
            && labels.allSatisfy { label in
                !label.isEmpty && label.count <= 63 && !label.hasPrefix("-") && !label.hasSuffix("-")
                    && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
            }
    }

    /// Two listening sockets collide when they share a port and an address, or one is a wildcard.
    static func overlap(_ a: Endpoint, _ b: Endpoint) -> Bool {
        let wildcards: Set<String> = ["0.0.0.0", "::"]
        return a.port == b.port && (a.host == b.host || wildcards.contains(a.host) || wildcards.contains(b.host))
    }

    /// The value nodes of a mapping by key, for pointing at one entry after the fact.
    private func mappingEntries(_ node: Node) -> [String: Node] {
        guard case .mapping(let mapping) = node else { return [:] }
        var entries: [String: Node] = [:]
        for (key, value) in mapping { if let name = key.scalar?.string { entries[name] = value } }
        return entries
    }

    // MARK: - Nodes

    private mutating func nodeList(_ node: Node) -> [NodeConfiguration]? {
        guard let items = sequence(node, "nodes") else { return nil }
        if items.isEmpty { fail(node, "nodes must name at least one node") }
        var nodes: [NodeConfiguration] = []
        var hosts: [String: NodeID] = [:]
        var ids: Set<NodeID> = []
        for item in items {
            guard let entries = mapping(item, "a node", allowed: ["id", "host", "max_connections", "install"]) else {
                continue
            }
            var id = required(entries, "id", in: item, "a node").flatMap { name($0, "node id") }
            if let known = id, ids.contains(known) {
                fail(entries["id"]?.value, "duplicate node id '\(known)'")
                id = nil
            }
            if let id { ids.insert(id) }
            let host = required(entries, "host", in: item, "node '\(id ?? "?")'").flatMap { self.host($0, "host") }
            guard let id, let host else { continue }
            if let other = hosts[host] {
                fail(entries["host"]?.value, "node '\(id)' has the same host as node '\(other)' (\(host))")
                continue
            }
            hosts[host] = id
            var configuration = NodeConfiguration(id: id, host: host)
            configuration.maxConnections = entries["max_connections"].flatMap {
                integer($0.value, "node '\(id)' max_connections", in: 1...10_000_000)
            }
            configuration.install = entries["install"].flatMap { install($0.value, "node '\(id)' install") }
            nodes.append(configuration)
        }
        return nodes
    }

    // MARK: - Sections

    private mutating func health(_ node: Node) -> HealthSettings? {
        guard
            let entries = mapping(
                node, "health", allowed: ["interval", "timeout", "rise", "fall", "port", "passive"])
        else {
            return nil
        }
        var health = HealthSettings()
        if let value = entries["interval"]?.value, let d = duration(value, "health interval") { health.interval = d }
        if let value = entries["timeout"]?.value, let d = duration(value, "health timeout") { health.timeout = d }
        if let value = entries["rise"]?.value, let n = integer(value, "health rise", in: 1...100) { health.rise = n }
        if let value = entries["fall"]?.value, let n = integer(value, "health fall", in: 1...100) { health.fall = n }
        if let value = entries["port"]?.value { health.port = port(value, "health port") }
        if let value = entries["passive"]?.value, let passive = passiveHealth(value) { health.passive = passive }
        return health
    }

    private mutating func passiveHealth(_ node: Node) -> PassiveHealthSettings? {
        guard let entries = mapping(node, "health passive", allowed: ["failures", "ejection", "max_ejection"]) else {
            return nil
        }
        var passive = PassiveHealthSettings()
        if let value = entries["failures"]?.value, let n = integer(value, "health passive failures", in: 0...1000) {
            passive.failures = n
        }
        if let value = entries["ejection"]?.value, let d = duration(value, "health passive ejection") {
            passive.ejection = d
        }
        if let value = entries["max_ejection"]?.value, let d = duration(value, "health passive max_ejection") {
            passive.maxEjection = d
        }
        if passive.maxEjection < passive.ejection, let entry = entries["max_ejection"] ?? entries["ejection"] {
            fail(entry.value, "health passive max_ejection must be at least its ejection")
        }
        return passive
    }

    private mutating func limits(_ node: Node) -> LimitSettings? {
        guard let entries = mapping(node, "limits", allowed: ["max_connections", "queue_timeout"]) else { return nil }
        var limits = LimitSettings()
        limits.maxConnections = entries["max_connections"].flatMap {
            integer($0.value, "limits max_connections", in: 1...100_000_000)
        }
        if let value = entries["queue_timeout"]?.value,
            let d = duration(value, "limits queue_timeout", atLeast: .zero)
        {
            limits.queueTimeout = d
        }
        return limits
    }

    private mutating func timeouts(_ node: Node) -> TimeoutSettings? {
        guard let entries = mapping(node, "timeouts", allowed: ["connect", "idle"]) else { return nil }
        var timeouts = TimeoutSettings()
        if let value = entries["connect"]?.value, let d = duration(value, "connect timeout") { timeouts.connect = d }
        if let value = entries["idle"]?.value, let d = duration(value, "idle timeout") { timeouts.idle = d }
        return timeouts
    }

    /// A section holding exactly one of `url` or `command`, plus `extraKeys`.
    mutating func nodeAction(
        _ node: Node, _ what: String, extraKeys: Set<String>
    ) -> (NodeAction, [String: Entry])? {
        guard let entries = mapping(node, what, allowed: extraKeys.union(["url", "command"])) else { return nil }
        switch (entries["url"], entries["command"]) {
        case (let url?, nil):
            guard let text = string(url.value, "\(what) url") else { return nil }
            guard text.hasPrefix("http://") || text.hasPrefix("https://") else {
                fail(url.value, "\(what) url '\(text)' must start with http:// or https://")
                return nil
            }
            return (.url(text), entries)
        case (nil, let command?):
            guard let items = sequence(command.value, "\(what) command") else { return nil }
            let words = items.compactMap { string($0, "\(what) command word") }
            guard words.count == items.count else { return nil }
            guard !words.isEmpty else {
                fail(command.value, "\(what) command must name a program")
                return nil
            }
            return (.command(words), entries)
        case (_?, let command?):
            fail(command.keyNode, "\(what) takes either 'url' or 'command', not both")
            return nil
        case (nil, nil):
            fail(node, "\(what) needs 'url' or 'command'")
            return nil
        }
    }

    private mutating func reconnect(_ node: Node) -> ReconnectSettings? {
        guard
            let (action, entries) = nodeAction(node, "reconnect", extraKeys: ["timeout", "retries", "max_unavailable"])
        else {
            return nil
        }
        var reconnect = ReconnectSettings(action: action)
        if let value = entries["timeout"]?.value, let d = duration(value, "reconnect timeout") { reconnect.timeout = d }
        if let value = entries["retries"]?.value, let n = integer(value, "reconnect retries", in: 0...100) {
            reconnect.retries = n
        }
        if let value = entries["max_unavailable"]?.value,
            let n = integer(value, "reconnect max_unavailable", in: 1...1000)
        {
            reconnect.maxUnavailable = n
        }
        return reconnect
    }

    private mutating func update(_ node: Node) -> UpdateSettings? {
        let keys: Set<String> = [
            "console", "drain_timeout", "slow_start", "install_timeout", "max_duration", "drain_rate",
            "canary_connections", "canary_timeout",
        ]
        guard let entries = mapping(node, "update", allowed: keys) else { return nil }
        var update = UpdateSettings()
        if let value = entries["console"]?.value, let policy = choice(value, "update console", as: ConsolePolicy.self) {
            update.console = policy
            if policy == .allow {
                warn(
                    value,
                    "update console 'allow': console logins may reach nodes in update mode, whose changes UMS"
                        + " discards when they reconnect to the productive database")
            }
        }
        if let value = entries["drain_timeout"]?.value, let d = duration(value, "drain_timeout", atLeast: .zero) {
            update.drainTimeout = d
        }
        if let value = entries["slow_start"]?.value, let d = duration(value, "slow_start", atLeast: .zero) {
            update.slowStart = d
        }
        if let value = entries["install_timeout"]?.value,
            let d = duration(value, "install_timeout", atLeast: .seconds(1))
        {
            update.installTimeout = d
        }
        if let value = entries["max_duration"]?.value, let d = duration(value, "max_duration", atLeast: .seconds(1)) {
            update.maxDuration = d
        }
        if let value = entries["drain_rate"]?.value, let n = integer(value, "update drain_rate", in: 1...1_000_000) {
            update.drainRate = n
        }
        if let value = entries["canary_connections"]?.value,
            let n = integer(value, "update canary_connections", in: 0...1_000_000)
        {
            update.canaryConnections = n
        }
        if let value = entries["canary_timeout"]?.value,
            let d = duration(value, "update canary_timeout", atLeast: .seconds(1))
        {
            update.canaryTimeout = d
        }
        return update
    }

    mutating func admin(_ node: Node) -> AdminSettings? {
        guard let entries = mapping(node, "admin", allowed: ["bind", "token_file"]) else { return nil }
        guard let bindNode = required(entries, "bind", in: node, "admin"),
            let bind = bindAddress(bindNode, "admin bind")
        else { return nil }
        return AdminSettings(
            bind: bind, tokenFile: entries["token_file"].flatMap { path($0.value, "admin token_file") })
    }
}
