import Metrics
import Prometheus

/// The process-wide Prometheus registry behind swift-metrics: what the data path counts
/// (`ums_balancer_connections_total`, bytes, refusals, probe durations, reloads) lands here.
public enum PrometheusMetrics {
    /// The registry, bootstrapped into `MetricsSystem` on first use (once per process).
    public static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }()

    /// Makes swift-metrics report into `registry`; later calls do nothing.
    public static func bootstrap() {
        _ = registry
    }
}
