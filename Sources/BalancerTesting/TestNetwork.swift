import Foundation

/// A small routed network of namespaces for tests that need more than loopback: two balancer
/// hosts and a hub (the LAN: a bridge, the UMS Servers' addresses, and a route to the test process).
///
/// ```
/// test process (root ns) 10.N.1.1 ── veth ── 10.N.1.2 hub 10.N.0.1 br0 ─┬─ eth0 10.N.0.21 host "a"
///                                               (UMS Servers: 10.N.0.11…) └─ eth0 10.N.0.22 host "b"
/// ```
///
/// Everything is created by `create()` and removed by `remove()`: deleting the namespaces removes
/// every interface and route the network added (the root end of a veth goes with its peer).
public final class TestNetwork: Sendable {
    /// The hub namespace (bridge, servers, router).
    public let hub: String
    /// The balancer hosts' namespaces, "a" and "b".
    public let hosts: [String: String]
    /// The second octet of 10.N.0.0/16, random so that a leftover of a crashed run does not collide.
    public let octet: Int
    private let rootInterface: String

    private init(suffix: String, octet: Int) {
        hub = "ums-hub-\(suffix)"
        hosts = ["a": "ums-a-\(suffix)", "b": "ums-b-\(suffix)"]
        self.octet = octet
        rootInterface = "ums\(suffix)"
    }

    /// An address on the LAN: `lan(21)` is 10.N.0.21.
    public func lan(_ host: Int) -> String { "10.\(octet).0.\(host)" }

    /// An address on the test process's side: `client(11)` is 10.N.1.11.
    public func client(_ host: Int) -> String { "10.\(octet).1.\(host)" }

    /// Host `name`'s LAN address (a: .21, b: .22).
    public func address(of name: String) -> String { lan(name == "a" ? 21 : 22) }

    /// Builds the network; `serverAddresses` are added to the hub (for UMS Servers to bind), and
    /// `clientAddresses` to the test process's side (for clients with distinct source addresses).
    /// Throws, naming the command, when a namespace or link cannot be made: the test fails, never skips.
    public static func create(serverAddresses: [Int], clientAddresses: [Int] = []) async throws -> TestNetwork {
        let suffix = String(UUID().uuidString.prefix(6)).lowercased()
        let network = TestNetwork(suffix: suffix, octet: Int.random(in: 200...249))
        do {
            try await network.build(serverAddresses: serverAddresses, clientAddresses: clientAddresses)
        } catch {
            await network.remove()
            throw error
        }
        return network
    }

    private func build(serverAddresses: [Int], clientAddresses: [Int]) async throws {
        for namespace in [hub] + hosts.values.sorted() { try await ip("netns", "add", namespace) }
        try await ip("-n", hub, "link", "set", "lo", "up")
        try await ip("-n", hub, "link", "add", "br0", "type", "bridge")
        try await ip("-n", hub, "link", "set", "br0", "up")
        for host in [1] + serverAddresses { try await ip("-n", hub, "addr", "add", "\(lan(host))/24", "dev", "br0") }
        for (name, namespace) in hosts.sorted(by: { $0.key < $1.key }) {
            let port = "v\(name)"
            try await ip("link", "add", port, "netns", hub, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            try await ip("-n", hub, "link", "set", port, "master", "br0")
            try await ip("-n", hub, "link", "set", port, "up")
            try await ip("-n", namespace, "link", "set", "lo", "up")
            try await ip("-n", namespace, "link", "set", "eth0", "up")
            try await ip("-n", namespace, "addr", "add", "\(address(of: name))/24", "dev", "eth0")
            try await ip("-n", namespace, "route", "add", "default", "via", lan(1))
        }
        try await ip("link", "add", rootInterface, "type", "veth", "peer", "name", "up0", "netns", hub)
        for host in [1] + clientAddresses { try await ip("addr", "add", "\(client(host))/24", "dev", rootInterface) }
        try await ip("link", "set", rootInterface, "up")
        try await ip("-n", hub, "addr", "add", "\(client(2))/24", "dev", "up0")
        try await ip("-n", hub, "link", "set", "up0", "up")
        try await ip("route", "add", "10.\(octet).0.0/24", "via", client(2))
        try await run("/usr/sbin/ip", "netns", "exec", hub, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    }

    /// Removes the namespaces (and with them every link and route the network added).
    public func remove() async {
        for namespace in [hub] + hosts.values.sorted() { _ = try? await ip("netns", "del", namespace) }
        _ = try? await ip("link", "del", rootInterface)
    }

    /// Whether `address` is configured in `namespace` (where a VRRP address currently lives).
    public func holds(_ address: String, in namespace: String) async throws -> Bool {
        let shown = try await ProcessHarness.runProgram(at: "/usr/sbin/ip", ["-n", namespace, "-4", "addr", "show"])
        return shown.output.contains(" \(address)/")
    }

    /// The arguments that run `program` in `namespace` (`ip netns exec` execs it: the PID is the program's).
    public static func inNamespace(_ namespace: String, _ program: String, _ arguments: [String]) -> [String] {
        ["netns", "exec", namespace, program] + arguments
    }

    @discardableResult
    private func ip(_ arguments: String...) async throws -> String {
        try await run("/usr/sbin/ip", arguments)
    }

    @discardableResult
    private func run(_ program: String, _ arguments: String...) async throws -> String {
        try await run(program, arguments)
    }

    private func run(_ program: String, _ arguments: [String]) async throws -> String {
        let result = try await ProcessHarness.runProgram(at: program, arguments)
        guard result.status == 0 else {
            throw TestKitError(
                "cannot build the test network: \(program) \(arguments.joined(separator: " ")) exited \(result.status):"
                    + " \(result.output) (the test needs root and network namespaces)")
        }
        return result.output
    }
}
