import BalancerAdmin
import Prometheus

/// What the process's Prometheus registry (the one `/metrics` serves) counted for `name` in the
/// series carrying `labels`, summed; 0 before anything was counted. Reports into it from here on.
func counted(_ name: String, _ labels: [String: String]) -> Double {
    PrometheusMetrics.bootstrap()
    let text = String(decoding: PrometheusMetrics.registry.emitToBuffer(), as: UTF8.self)
    let series = text.split(separator: "\n").filter { line in
        line.hasPrefix(name + "{") && labels.allSatisfy { line.contains("\($0.key)=\"\($0.value)\"") }
    }
    return series.compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }.reduce(0, +)
}
