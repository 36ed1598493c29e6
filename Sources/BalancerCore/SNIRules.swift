/// How a `by-sni` listener maps TLS server names to traffic classes.
public struct SNIRules: Sendable, Hashable {
    /// Name patterns per class: exact names, or `*.example.com` for one label under the domain.
    public var patterns: [TrafficClass: [String]]
    /// The class of a connection whose name matches nothing, or that sent no name.
    public var defaultClass: TrafficClass

    public init(patterns: [TrafficClass: [String]], defaultClass: TrafficClass) {
        self.patterns = patterns.mapValues { $0.map { $0.lowercased() } }
        self.defaultClass = defaultClass
    }

    /// The class for `serverName`: an exact match wins over a wildcard, and console over device.
    public func classify(_ serverName: String?) -> TrafficClass {
        guard let name = serverName?.lowercased() else { return defaultClass }
        let order: [TrafficClass] = [.console, .device]
        for trafficClass in order where patterns[trafficClass, default: []].contains(name) {
            return trafficClass
        }
        for trafficClass in order
        where patterns[trafficClass, default: []].contains(where: { Self.wildcard($0, matches: name) }) {
            return trafficClass
        }
        return defaultClass
    }

    static func wildcard(_ pattern: String, matches name: String) -> Bool {
        guard pattern.hasPrefix("*.") else { return false }
        let suffix = pattern.dropFirst(1)  // ".example.com"
        guard name.hasSuffix(suffix) else { return false }
        let label = name.dropLast(suffix.count)
        return !label.isEmpty && !label.contains(".")
    }
}
