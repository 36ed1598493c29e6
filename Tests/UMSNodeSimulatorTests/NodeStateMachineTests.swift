import Testing
import UMSNodeSimulator

@Suite("Mode state machine", .timeLimit(.minutes(1)))
struct NodeStateMachineTests {
    let old = NodeVersion("12.06.100")!
    let new = NodeVersion("12.07.100")!

    @Test func installIntoUpdateModeThenReconnect() throws {
        var machine = NodeStateMachine(version: old)
        #expect(machine.mode == .normal && machine.database == .productive)
        try machine.beginInstall(new)
        #expect(machine.mode == .installing)
        #expect(machine.version == old, "a node reports its old version until its install finishes")
        machine.finishInstall(.useLocalCopy)
        #expect(machine.mode == .update && machine.database == .localCopy && machine.version == new)
        #expect(throws: NodeStateMachine.Refusal.self) { try machine.requestReconnect(productiveSchema: old) }
        #expect(machine.mode == .update)
        #expect(try machine.requestReconnect(productiveSchema: new) == .started)
        #expect(machine.mode == .reconnecting)
        #expect(try machine.requestReconnect(productiveSchema: new) == .alreadyDone)
        machine.finishReconnect()
        #expect(machine.mode == .normal && machine.database == .productive && machine.version == new)
        #expect(try machine.requestReconnect(productiveSchema: new) == .alreadyDone)
    }

    @Test func aPendingReconnectKeepsServingInUpdateModeAndAnswersASecondCallerAlreadyDone() throws {
        var machine = NodeStateMachine(version: old)
        try machine.beginInstall(new)
        machine.finishInstall(.useLocalCopy)
        #expect(try machine.requestReconnect(productiveSchema: new, pending: true) == .started)
        #expect(machine.mode == .update && machine.reconnectPending)
        // A second balancer asking meanwhile: the reconnect is already under way.
        #expect(try machine.requestReconnect(productiveSchema: new, pending: true) == .alreadyDone)
        machine.beginPendingReconnect()
        #expect(machine.mode == .reconnecting && !machine.reconnectPending)
        machine.finishReconnect()
        #expect(machine.mode == .normal && machine.database == .productive)
    }

    @Test func lastNodeRenewsTheSchema() throws {
        var machine = NodeStateMachine(version: old)
        try machine.beginInstall(new)
        machine.finishInstall(.renewProductiveSchema)
        #expect(machine.mode == .normal && machine.database == .productive && machine.version == new)
    }

    @Test func installOutcomeDependsOnTheOtherNodes() {
        #expect(NodeStateMachine.installOutcome(target: new, otherNodeVersions: [new, new]) == .renewProductiveSchema)
        #expect(NodeStateMachine.installOutcome(target: new, otherNodeVersions: []) == .renewProductiveSchema)
        #expect(NodeStateMachine.installOutcome(target: new, otherNodeVersions: [new, old]) == .useLocalCopy)
        #expect(
            NodeStateMachine.installOutcome(target: new, otherNodeVersions: [NodeVersion("12.7.100")!])
                == .renewProductiveSchema)
    }

    @Test func refusesOverlappingTransitions() throws {
        var machine = NodeStateMachine(version: old)
        try machine.beginInstall(new)
        #expect(throws: NodeStateMachine.Refusal.self) { try machine.beginInstall(new) }
        #expect(throws: NodeStateMachine.Refusal.self) { try machine.requestReconnect(productiveSchema: new) }
        machine.finishInstall(.useLocalCopy)
        _ = try machine.requestReconnect(productiveSchema: new)
        #expect(throws: NodeStateMachine.Refusal.self) { try machine.beginInstall(new) }
    }

    @Test func failedInstallRestoresThePreviousState() throws {
        var machine = NodeStateMachine(version: old)
        try machine.beginInstall(new)
        machine.failInstall()
        #expect(machine.mode == .normal && machine.version == old && machine.installingVersion == nil)
    }

    @Test func countsConsoleLoginsOnlyInUpdateMode() throws {
        var machine = NodeStateMachine(version: old)
        #expect(machine.recordConsoleLogin() == false)
        #expect(machine.consoleLoginsInUpdateMode == 0)
        try machine.beginInstall(new)
        machine.finishInstall(.useLocalCopy)
        #expect(machine.recordConsoleLogin() == true)
        #expect(machine.recordConsoleLogin() == true)
        #expect(machine.consoleLoginsInUpdateMode == 2)
    }

    @Test func resumedUpdateModeWorksOnTheLocalCopy() {
        let machine = NodeStateMachine(resumingUpdateAt: new)
        #expect(machine.mode == .update && machine.database == .localCopy && machine.version == new)
    }
}
