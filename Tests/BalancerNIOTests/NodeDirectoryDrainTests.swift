import BalancerCore
import BalancerDataPath
import Testing

@Suite struct NodeDirectoryDrainTests {
    func directory() -> NodeDirectory {
        NodeDirectory(
            nodes: ["ums1", "ums2"].map { NodeConfiguration(id: $0, host: "127.0.0.1") }, consolePolicy: .normalOnly
        ) { _ in NodeObservation(health: .up, mode: .update) }
    }

    @Test(.timeLimit(.minutes(1)))
    func aDrainedNodeIsToldDrainedWhenItsLastConnectionClosesNotBefore() async {
        let directory = directory()
        directory.connectionOpened(to: "ums1")
        directory.connectionOpened(to: "ums1")
        directory.apply(.reconnectDrainSet(true), to: "ums1")
        directory.connectionClosed(from: "ums1")
        // Another node's last close says nothing about ums1.
        directory.connectionOpened(to: "ums2")
        directory.connectionClosed(from: "ums2")
        directory.connectionClosed(from: "ums1")
        var drained = directory.drained.makeAsyncIterator()
        #expect(await drained.next() == "ums1")
    }

    @Test(.timeLimit(.minutes(1)))
    func aNodeDrainedWithNothingOpenIsToldDrainedAtOnce() async {
        let directory = directory()
        directory.apply(.adminStateSet(.draining), to: "ums2")
        var drained = directory.drained.makeAsyncIterator()
        #expect(await drained.next() == "ums2")
    }
}
