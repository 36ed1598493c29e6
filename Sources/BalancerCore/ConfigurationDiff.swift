/// What a reload changes, computed before anything is touched so a reload applies whole or not at all.
public struct ConfigurationDiff: Sendable {
    /// Listeners to open.
    public var addedListeners: [ListenerConfiguration] = []
    /// Listeners to stop accepting on; their connections drain.
    public var removedListeners: [ListenerConfiguration] = []
    /// Listeners whose address changed: a new socket opens, the old one drains.
    public var reboundListeners: [(old: ListenerConfiguration, new: ListenerConfiguration)] = []
    /// Listeners that keep their socket and connections; new connections follow the new settings.
    public var changedListeners: [ListenerConfiguration] = []
    public var addedNodes: [NodeConfiguration] = []
    public var removedNodes: [NodeConfiguration] = []
    /// Nodes whose address changed: they keep their admin state but are probed afresh.
    public var changedNodes: [NodeConfiguration] = []
    /// Nodes whose `max_connections` changed: applied to new connections.
    public var limitedNodes: [NodeConfiguration] = []
    /// Probing (health, status) changed: probes restart with the new settings.
    public var probingChanged = false
    /// Settings that only a restart applies, by key, with a word on why.
    public var needsRestart: [String] = []

    /// The difference between the running configuration and a validated new one.
    public init(from old: BalancerConfiguration, to new: BalancerConfiguration) {
        let oldListeners = Dictionary(uniqueKeysWithValues: old.listeners.map { ($0.name, $0) })
        let newListeners = Dictionary(uniqueKeysWithValues: new.listeners.map { ($0.name, $0) })
        for listener in new.listeners {
            guard let before = oldListeners[listener.name] else {
                addedListeners.append(listener)
                continue
            }
            if before.bind != listener.bind {
                reboundListeners.append((before, listener))
            } else if before != listener {
                changedListeners.append(listener)
            }
        }
        removedListeners = old.listeners.filter { newListeners[$0.name] == nil }

        let oldNodes = Dictionary(uniqueKeysWithValues: old.nodes.map { ($0.id, $0) })
        let newNodeIDs = Set(new.nodes.map(\.id))
        for node in new.nodes {
            guard let before = oldNodes[node.id] else {
                addedNodes.append(node)
                continue
            }
            // Only a new address resets what is known of a node; a new limit applies as it is.
            if before.host != node.host { changedNodes.append(node) }
            if before.maxConnections != node.maxConnections { limitedNodes.append(node) }
        }
        removedNodes = old.nodes.filter { !newNodeIDs.contains($0.id) }

        probingChanged =
            old.health != new.health || old.status != new.status || old.healthPort != new.healthPort
            || !addedNodes.isEmpty || !removedNodes.isEmpty || !changedNodes.isEmpty
        if old.threads != new.threads { needsRestart.append("threads") }
        if old.state != new.state { needsRestart.append("state") }
        if old.admin != new.admin { needsRestart.append("admin") }
    }

    /// Nothing at all changes.
    public var isEmpty: Bool {
        addedListeners.isEmpty && removedListeners.isEmpty && reboundListeners.isEmpty && changedListeners.isEmpty
            && addedNodes.isEmpty && removedNodes.isEmpty && changedNodes.isEmpty && limitedNodes.isEmpty
            && !probingChanged
            && needsRestart.isEmpty
    }

    /// One line for the log and journal: "listeners +api -old ~devices; nodes +ums4".
    public var summary: String {
        var parts: [String] = []
        let listenerChanges =
            addedListeners.map { "+\($0.name)" } + removedListeners.map { "-\($0.name)" }
            + reboundListeners.map { "~\($0.new.name) (new address)" } + changedListeners.map { "~\($0.name)" }
        if !listenerChanges.isEmpty { parts.append("listeners " + listenerChanges.joined(separator: " ")) }
        let nodeChanges =
            addedNodes.map { "+\($0.id)" } + removedNodes.map { "-\($0.id)" } + changedNodes.map { "~\($0.id)" }
            + limitedNodes.map { "~\($0.id) (max_connections)" }
        if !nodeChanges.isEmpty { parts.append("nodes " + nodeChanges.joined(separator: " ")) }
        if probingChanged && nodeChanges.isEmpty { parts.append("probes") }
        if !needsRestart.isEmpty { parts.append("needs a restart to apply: \(needsRestart.joined(separator: ", "))") }
        return parts.isEmpty ? "no changes" : parts.joined(separator: "; ")
    }
}
