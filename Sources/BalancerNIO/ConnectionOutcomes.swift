import BalancerCore
import Metrics

// What both data paths (the NIO glue and the splice loops) record when a connection cannot be
// served or a node lets it down, so the access log, journal and metrics read the same either way.

extension ListenerContext {
    /// No node may take the connection.
    func refuse(_ record: ConnectionRecord, _ refusal: Refusal) {
        record.end("refused", reason: refusal.description)
        journal.record(.refusal, "\(configuration.name): \(refusal)")
        metrics.refused(trafficClass: record.trafficClass, reason: "no-eligible-node")
    }

    /// Every node tried failed, for the reasons in `failures`.
    func giveUp(_ record: ConnectionRecord, failures: [String]) {
        let reasons = failures.joined(separator: ", ")
        journal.record(.refusal, "\(configuration.name): \(record.trafficClass) unavailable: \(reasons)")
        metrics.refused(trafficClass: record.trafficClass, reason: "all-connects-failed")
        record.end("unavailable", reason: "\(record.trafficClass) unavailable: every node failed: \(reasons)")
    }
}

extension ConnectionRecord {
    /// A classifying listener could not read what it classifies by; counted per listener and reason.
    func handshakeFailed(listener: String, reason: String, detail: String, outcome: String = "handshake-failed") {
        Counter(
            label: "ums_balancer_handshake_failures_total", dimensions: [("listener", listener), ("reason", reason)]
        )
        .increment()
        end(outcome, reason: detail)
    }

    /// A connect to `node` failed; the next node is tried.
    func connectFailed(to node: NodeID, error: String) {
        logger.debug(
            "connect failed, trying next node",
            metadata: ["client": "\(clientDescription)", "node": "\(node)", "error": "\(error)"])
    }

    /// `node` closed without answering; the client is handed to the next node.
    func handedOn(from node: NodeID) {
        recovered()
        retries += 1
        logger.notice(
            "node closed a connection without answering: handing the client to the next node",
            metadata: ["client": "\(clientDescription)", "failed_node": "\(node)"])
    }
}
