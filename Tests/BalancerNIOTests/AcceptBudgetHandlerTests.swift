import BalancerDataPath
import NIOCore
import NIOEmbedded
import Testing

@testable import BalancerNIO

#if canImport(Glibc)
import Glibc
#endif

/// The NIO listener at its descriptor budget: it stops asking the socket for connections (so
/// clients wait in the backlog), counts the pause, and reads again when a connection gives back.
@Suite struct AcceptBudgetHandlerTests {
    /// Counts the reads that reach the server socket.
    final class ReadCounter: ChannelOutboundHandler {
        typealias OutboundIn = Never
        var reads = 0
        func read(context: ChannelHandlerContext) {
            reads += 1
            context.read()
        }
    }

    @Test func aListenerOutOfDescriptorsStopsAcceptingCountsThePauseAndResumesWhenOneCloses() throws {
        let listener = "budget-\(UInt32.random(in: 0...UInt32.max))"
        _ = counted("ums_balancer_accept_paused_total", [:])
        let budget = DescriptorBudget(capacity: DescriptorBudget.perConnection)  // one connection
        let server = EmbeddedChannel()
        let socket = ReadCounter()
        try server.pipeline.syncOperations.addHandlers([
            socket, AcceptBudgetHandler(budget: budget, listener: listener),
        ])

        server.read()
        #expect(socket.reads == 1)
        let client = EmbeddedChannel()
        try server.writeInbound(client as any Channel)
        server.pipeline.fireChannelReadComplete()
        #expect(budget.used == DescriptorBudget.perConnection)

        server.read()
        #expect(socket.reads == 1, "no accept while the budget is spent")
        #expect(counted("ums_balancer_accept_paused_total", ["listener": listener]) == 1)

        try client.close().wait()
        client.embeddedEventLoop.run()  // completes its close future
        server.embeddedEventLoop.run()  // the listener's wake-up
        #expect(socket.reads == 2, "accepting again once the connection gave its descriptors back")
        #expect(budget.used == DescriptorBudget.perConnection, "room taken for the connection the read may accept")
        #expect(counted("ums_balancer_accept_paused_total", ["listener": listener]) == 1)
        _ = try server.finish()
    }

    @Test func anAcceptThatFailsForWantOfDescriptorsCountsAPause() throws {
        let listener = "emfile-\(UInt32.random(in: 0...UInt32.max))"
        _ = counted("ums_balancer_accept_paused_total", [:])
        let server = EmbeddedChannel()
        try server.pipeline.syncOperations.addHandler(
            AcceptBudgetHandler(budget: DescriptorBudget(capacity: 100), listener: listener))
        server.pipeline.fireErrorCaught(IOError(errnoCode: EMFILE, reason: "accept"))
        server.pipeline.fireErrorCaught(IOError(errnoCode: ECONNABORTED, reason: "accept"))
        #expect(throws: IOError.self) { try server.throwIfErrorCaught() }
        #expect(counted("ums_balancer_accept_paused_total", ["listener": listener]) == 1)
        _ = try? server.finish()
    }
}
