import BalancerCore
import NIOCore

extension PathConnection {
    // MARK: - Time and the balancer

    /// How often the sweeper must look at this connection's timers.
    var shortestTimeout: Duration {
        min(machine.shortestTimeout, listener.shared.settings.connectTimeout, listener.shared.settings.queueTimeout)
    }

    func tick(_ deadline: NIODeadline) {
        guard !finished else { return }
        let now = deadline.monotonic
        for exchange in exchanges { exchange.tick(now) }
        perform(machine.tick(now: now))
    }

    /// The balancer closes the connection for good (shutdown grace over, listener gone).
    func shutDown(_ end: ConnectionEnd) {
        guard !finished else { return }
        machine.ended(end)
        for exchange in exchanges { exchange.end(end) }
        closeWhenFlushed()
    }

    /// The balancer is stopping: no request after the ones in flight.
    func quiesce() {
        guard !finished else { return }
        let action = machine.quiesce()
        if isHTTP2, case .none = action {
            goAway()
            return
        }
        perform(action)
    }

    private func perform(_ action: HTTPConnectionAction) {
        switch action {
        case .none, .readNext:
            break
        case .close:
            closeWhenFlushed()
        case .answerAndClose(let answer, _):
            answerRaw(answer)
        }
    }

    /// A limit's answer (408, 431) while no request is in flight, through the HTTP codec.
    func answerRaw(_ answer: BalancerAnswer) {
        guard let handler = try? channel.pipeline.syncOperations.handler(type: ClientHTTPHandler.self) else {
            closeWhenFlushed()
            return
        }
        handler.writeAnswer(answer, keepAlive: false)
        handler.closeAfterFlush(linger: true)
    }

    func close() {
        channel.close(promise: nil)
    }

    /// Closes once what was written is out; `linger`: after an answer that ends the connection
    /// while the client may still be sending (a 4xx), what it sends is read and dropped first.
    func closeWhenFlushed(linger: Bool = false) {
        guard let wire else {
            close()
            return
        }
        wire.closeWhenFlushed(linger: linger)
    }
}
