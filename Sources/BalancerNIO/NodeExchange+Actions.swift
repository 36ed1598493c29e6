import BalancerCore
import BalancerDataPath
import NIOCore
import NIOHTTP1

extension NodeExchange {
    // MARK: - Carrying out the machine's actions

    func perform(_ action: ExchangeAction<NodeTarget>) {
        guard !finished else { return }
        switch action {
        case .none:
            break
        case .route(let trafficClass):
            switch connection.route(trafficClass) {
            case .targets(let targets): perform(machine.routed(targets))
            case .refused(let refusal): perform(machine.refused(refusal))
            case .queue: perform(machine.queued(now: NIODeadline.now().monotonic))
            }
        case .acquire(let target, let reuse):
            acquire(target, reuse: reuse)
        case .send:
            send()
        case .answer(let answer):
            reportFailures()
            dropNode(reusable: false)
            self.answer(answer)
        case .abort:
            reportFailures()
            dropNode(reusable: false)
            client?.abort()
            finish(keepAlive: false)
        }
    }

    /// Tells passive health the node failures recorded since the last call.
    func reportFailures() {
        let failures = machine.failures
        guard failures.count > reportedFailures else { return }
        connection.reportFailures(failures[reportedFailures...])
        reportedFailures = failures.count
    }

    func acquire(_ target: NodeTarget, reuse: Bool) {
        reportFailures()
        dropNode(reusable: false)
        if countedNode != target.node {
            if let countedNode { connection.directory.connectionClosed(from: countedNode) }
            connection.directory.connectionOpened(to: target.node)
            countedNode = target.node
        }
        guard let address = target.address else {
            perform(machine.acquireFailed(.unresolved(target.host)))
            return
        }
        let key = connection.poolKey(for: target, at: address)
        if reuse, let pooled = connection.pool?.take(key) {
            pooled.exchange = self
            node = pooled
            perform(machine.acquired(reused: true))
            return
        }
        machine.connecting(now: NIODeadline.now().monotonic)
        dialAttempt += 1
        let attempt = dialAttempt
        connection.dial(target, at: address, key: key).assumeIsolated().whenComplete { result in
            guard attempt == self.dialAttempt, !self.finished, self.machine.phase == .acquiring else {
                if case .success(let handler) = result { handler.close() }
                return
            }
            switch result {
            case .success(let handler):
                handler.exchange = self
                self.node = handler
                if handler.ready { self.perform(self.machine.acquired(reused: false)) }
            case .failure(let error):
                self.perform(self.machine.acquireFailed(NIORelay.failureKind(error, host: target.host)))
            }
        }
    }

    func send() {
        if !registered, let node = machine.node {
            registered = true
            connection.registerExchange(self, node: node)
        }
        // An HTTP/2 request without Content-Length waits for its first part to say whether a body follows.
        if case .decidedByFirstPart = forwarding.body, waiting.isEmpty, !requestComplete { return }
        sendHead()
    }

    func sendHead() {
        guard let node, !headSent else { return }
        headSent = true
        node.write(.head(head))
        for part in waiting { node.write(part) }
        // A retry on a fresh connection sends the same head again: keep the parts (the end) it needs.
        if !forwarding.retryable { waiting = [] }
        // Sent while the client's bytes are being read (a pooled connection was at hand), the
        // head waits for the rest of the read (the end, a body) and the read's completion flushes
        // them together; sent later (a new connection came up), it goes now.
        if !(client?.isReading ?? false) { node.flush() }
        client?.resumeReading()
    }

    func forward(_ part: HTTPClientRequestPart) {
        guard let node, headSent else {
            waiting.append(part)
            if case .decidedByFirstPart = forwarding.body, machine.phase == .sending { sendHead() }
            return
        }
        node.write(part)
        if case .end = part, !(client?.isReading ?? false) { node.flush() }
    }

    /// Lets the current node connection go: back to the pool, or closed.
    func dropNode(reusable: Bool) {
        if let node {
            self.node = nil
            node.exchange = nil
            if reusable, connection.pool != nil, node.isOpen {
                connection.pool?.put(node)
            } else {
                node.close()
            }
        }
        headSent = false
    }

    func answer(_ answer: BalancerAnswer) {
        log.status = answer.status
        response = nil
        let keepAlive = forwarding.clientKeepAlive && !connection.quiescing
        client?.writeAnswer(answer, keepAlive: keepAlive)
        if requestComplete {
            finish(keepAlive: keepAlive)
        } else {
            // Read the rest of the request and drop it, then the connection takes the next one.
            discarding = true
            keepAliveAfterDiscard = keepAlive
            client?.resumeReading()
        }
    }

    func finish(keepAlive: Bool) {
        guard !finished else { return }
        finished = true
        if let node { dropNode(reusable: false) }
        if let countedNode {
            connection.directory.connectionClosed(from: countedNode)
            self.countedNode = nil
        }
        if registered { connection.unregisterExchange(self) }
        reportFailures()
        if let machineNode = machine.node { connection.lastNode = machineNode }
        connection.requestLogged(log, machine, of: self)
        let client = self.client
        self.client = nil
        client?.exchangeFinished(keepAlive: keepAlive)
    }

    // MARK: - Upgrades

    /// The node switched protocols: both connections leave HTTP and their bytes are relayed.
    func startTunnel() {
        guard let node, let client else { return }
        self.node = nil
        node.detach()
        machine.responseFinished(upgraded: true)
        connection.upgraded()
        tunnel = Tunnel(exchange: self)
        client.becomeTunnel(tunnel!)
        Tunnel.attach(tunnel!, toNode: node)
    }

    /// Bytes moved through the tunnel: the connection is not idle.
    func tunnelActivity() {
        connection.activity()
    }

    /// The tunnel closed: the upgraded connection is over.
    func tunnelClosed() {
        guard !finished else { return }
        tunnel = nil
        finish(keepAlive: false)
    }
}
