import BalancerDataPath
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Sits on a NIO listener's server channel: accepts only while the descriptor budget has room for
/// a connection's two sockets, so at the open-file limit new clients wait in the kernel's listen
/// backlog instead of being accepted and reset. Each accepted channel gives its descriptors back
/// when it closes, which lets the listener accept again.
final class AcceptBudgetHandler: ChannelDuplexHandler {
    typealias InboundIn = any Channel
    typealias OutboundIn = Never

    private let budget: DescriptorBudget
    private let listener: String
    private var waiting = false
    private var context: ChannelHandlerContext?

    init(budget: DescriptorBudget, listener: String) {
        self.budget = budget
        self.listener = listener
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let loop = context.eventLoop
        let handle = LoopBound(self)
        budget.onFreed { loop.execute { handle.value.resume() } }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        if waiting {
            waiting = false
            budget.stoppedWaiting()
        }
    }

    func read(context: ChannelHandlerContext) {
        // The server channel accepts one connection per read (maxMessagesPerRead 1), so one
        // connection's worth is taken here and given back if the read accepted nothing.
        if taken > 0 {
            context.read()
        } else if budget.take(listener: listener) {
            taken = 1
            context.read()
        } else if !waiting {
            waiting = true
            budget.startedWaiting()
            DescriptorBudget.acceptPaused(listener: listener)
        }
    }

    /// Budget taken for reads under way and not yet matched by an accepted channel.
    private var taken = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = unwrapInboundIn(data)
        if taken > 0 {
            taken -= 1
        } else {
            budget.takeAnyway()
        }
        let budget = self.budget
        child.closeFuture.whenComplete { _ in budget.give() }
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        for _ in 0..<taken { budget.give() }
        taken = 0
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // NIO backs off by itself when accept fails for want of descriptors; count the pause.
        if let error = error as? IOError, [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(error.errnoCode) {
            DescriptorBudget.acceptPaused(listener: listener)
        }
        context.fireErrorCaught(error)
    }

    private func resume() {
        guard waiting, let context else { return }
        waiting = false
        budget.stoppedWaiting()
        read(context: context)
    }
}

@available(*, unavailable)
extension AcceptBudgetHandler: Sendable {}

/// A loop-bound value carried through a `@Sendable` closure to its own event loop.
struct LoopBound<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
