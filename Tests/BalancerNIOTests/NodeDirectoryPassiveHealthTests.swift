import BalancerCore
import BalancerDataPath
import Glibc
import Testing

/// What the directory counts for passive health: a node's own failures, never the balancer's.
@Suite struct NodeDirectoryPassiveHealthTests {
    func directory() -> NodeDirectory {
        let nodes = ["ums1", "ums2"].enumerated().map { NodeConfiguration(id: $1, host: "127.0.0.\(7 + $0)") }
        let directory = NodeDirectory(nodes: nodes, consolePolicy: .normalOnly) { _ in
            NodeObservation(health: .up, mode: .normal)
        }
        var passive = PassiveHealthSettings()
        passive.failures = 3
        directory.configure(passive: passive, slowStart: .zero, nodes: nodes)
        return directory
    }

    @Test func noLocalPortTowardANodeNeverTakesItOutOfRotation() {
        let directory = directory()
        // Above ~470 new connections a second to one address, client-first closes leave every
        // ephemeral port toward it in TIME_WAIT: connect(2) says EADDRNOTAVAIL.
        for _ in 0..<5 { directory.nodeFailed("ums1", NodeFailureKind(connectError: EADDRNOTAVAIL)) }
        for _ in 0..<5 { directory.nodeFailed("ums1", NodeFailureKind(connectError: EMFILE)) }
        #expect(!directory.isEjected("ums1"))
        for _ in 0..<3 { directory.nodeFailed("ums2", NodeFailureKind(connectError: ECONNREFUSED)) }
        #expect(directory.isEjected("ums2"), "a refusing node still goes")
    }
}
