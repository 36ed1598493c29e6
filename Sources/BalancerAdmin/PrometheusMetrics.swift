import Metrics
import Prometheus

/// The process-wide Prometheus registry behind swift-metrics: what the data path counts
/// (`ums_balancer_connections_total`, bytes, refusals, probe durations, reloads) lands here.
public enum PrometheusMetrics {
    /// The registry, bootstrapped into `MetricsSystem` on first use (once per process).
    public static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(DocumentedMetricsFactory(registry: registry))
        return registry
    }()

    /// Makes swift-metrics report into `registry`; later calls do nothing.
    public static func bootstrap() {
        _ = registry
    }

    /// The `# HELP` line of every metric the data path reports through swift-metrics; one the
    /// table misses gets a generic line rather than none (`promtool check metrics` wants HELP).
    static let help: [String: String] = [
        "ums_balancer_accept_paused_total":
            "Times a listener stopped accepting at the open-file limit (clients wait in the listen backlog); not a node failure.",
        "ums_balancer_bytes_total": "Bytes proxied, by listener and direction (in: from clients, out: to clients).",
        "ums_balancer_connections_active": "Client connections open now, by listener.",
        "ums_balancer_connections_total": "Client connections finished, by listener, class, node and outcome.",
        "ums_balancer_handshake_failures_total":
            "Connections given up before routing (TLS, SNI, HTTP head, PROXY header), by listener and reason.",
        "ums_balancer_node_ejections_total": "Times passive health took a node out of rotation.",
        "ums_balancer_probe_duration_seconds": "How long each node's status or health probe took.",
        "ums_balancer_refusals_total": "Connections (by-path: requests) no node took, by listener, class and reason.",
        "ums_balancer_requests_total":
            "Requests of by-path listeners finished, by listener, class, node, status and outcome.",
        "ums_balancer_http_limits_total":
            "Clients of by-path listeners that ran into an HTTP limit (answered 4xx or closed), by listener and limit.",
        "ums_balancer_reloads_total": "Configuration reloads, by result (applied or rejected).",
        "ums_balancer_journal_dropped_events_total":
            "Journal events dropped unwritten: the queue was full while the state database failed or under a flood.",
        "ums_balancer_state_write_failures_total": "Writes to the state database that failed.",
    ]

    static func help(for name: String) -> String {
        help[name] ?? "UMS Balancer metric \(name)."
    }
}

/// swift-metrics into a Prometheus registry as `PrometheusMetricsFactory` does, with HELP text
/// from `PrometheusMetrics.help` (the stock factory emits none).
struct DocumentedMetricsFactory: MetricsFactory {
    let registry: PrometheusCollectorRegistry
    private let durationBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]
    private let valueBuckets: [Double] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(name: label, labels: dimensions, help: PrometheusMetrics.help(for: label))
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(name: label, labels: dimensions, help: PrometheusMetrics.help(for: label))
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        let help = PrometheusMetrics.help(for: label)
        guard aggregate else { return registry.makeGauge(name: label, labels: dimensions, help: help) }
        return registry.makeValueHistogram(name: label, labels: dimensions, buckets: valueBuckets, help: help)
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(name: label, labels: dimensions, help: PrometheusMetrics.help(for: label))
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        registry.makeDurationHistogram(
            name: label, labels: dimensions, buckets: durationBuckets, help: PrometheusMetrics.help(for: label))
    }

    func destroyCounter(_ handler: any CounterHandler) {
        if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
    }

    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
    }

    func destroyRecorder(_ handler: any RecorderHandler) {
        if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
        if let histogram = handler as? Histogram<Double> { registry.unregisterValueHistogram(histogram) }
    }

    func destroyMeter(_ handler: any MeterHandler) {
        if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
    }

    func destroyTimer(_ handler: any TimerHandler) {
        if let histogram = handler as? Histogram<Duration> { registry.unregisterDurationHistogram(histogram) }
    }
}
