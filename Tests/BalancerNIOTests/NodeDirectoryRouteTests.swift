import BalancerCore
import BalancerDataPath
import NIOCore
import Testing

/// Where routing sends a connection: the node's address with the listener's backend port, and
/// for a node named by host name, the address it resolved to last.
@Suite struct NodeDirectoryRouteTests {
    func directory(host: String) -> NodeDirectory {
        NodeDirectory(nodes: [NodeConfiguration(id: "ums1", host: host)], consolePolicy: .normalOnly) { _ in
            NodeObservation(health: .up, mode: .normal)
        }
    }

    func address(_ directory: NodeDirectory, port: Int) -> SocketAddress? {
        guard case .targets(let targets) = directory.route(.device, algorithm: .roundRobin, clientKey: "", port: port)
        else { return nil }
        return targets.first?.address
    }

    @Test func eachListenerGetsTheNodeAddressWithItsOwnBackendPort() throws {
        let directory = directory(host: "127.0.0.7")
        #expect(address(directory, port: 8443) == (try SocketAddress(ipAddress: "127.0.0.7", port: 8443)))
        #expect(address(directory, port: 30001) == (try SocketAddress(ipAddress: "127.0.0.7", port: 30001)))
        #expect(address(directory, port: 8443) == (try SocketAddress(ipAddress: "127.0.0.7", port: 8443)))
    }

    @Test func aHostNameGoesWhereItResolvedLast() throws {
        let directory = directory(host: "ums1.example")
        #expect(address(directory, port: 8443) == nil)
        directory.resolved("ums1", name: "ums1.example", to: try SocketAddress(ipAddress: "127.0.0.7", port: 0))
        #expect(address(directory, port: 8443) == (try SocketAddress(ipAddress: "127.0.0.7", port: 8443)))
        // The name moved (DNS changed): new connections follow it at once, same port.
        directory.resolved("ums1", name: "ums1.example", to: try SocketAddress(ipAddress: "127.0.0.8", port: 0))
        #expect(address(directory, port: 8443) == (try SocketAddress(ipAddress: "127.0.0.8", port: 8443)))
        directory.resolved("ums1", name: "ums1.example", to: nil)
        #expect(address(directory, port: 8443) == nil)
    }
}
