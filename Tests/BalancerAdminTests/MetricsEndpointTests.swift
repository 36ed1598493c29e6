import BalancerAdmin
import BalancerTesting
import Prometheus
import Testing

@Suite(.serialized, .timeLimit(.minutes(2)))
struct MetricsEndpointTests {
    @Test func metricsAreValidExpositionTextWithTheSnapshotGauges() async throws {
        try await withAdminHarness { harness in
            try await harness.waitUntilProbed()
            // Stands in for what the data path reports through swift-metrics.
            harness.metrics.makeCounter(
                descriptor: MetricNameDescriptor(
                    metricName: "ums_balancer_connections", unitName: "total", helpText: "Connections."),
                labels: [("listener", "devices"), ("class", "device"), ("node", "ums1"), ("outcome", "closed")]
            ).increment()
            #expect(try await harness.request("POST", "/nodes/ums2/maintenance").status == 200)
            #expect(try await harness.request("PUT", "/nodes/ums3/mode", body: #"{"mode":"update"}"#).status == 200)

            let answer = try await harness.request("GET", "/metrics")
            #expect(answer.status == 200)
            #expect(answer.contentType.hasPrefix("text/plain; version=0.0.4"))
            let metrics = try PrometheusText(answer.body)

            for node in ["ums1", "ums2", "ums3"] {
                #expect(metrics.samples("ums_balancer_node_mode", ["node": node]).count == 5)
                #expect(metrics.samples("ums_balancer_node_mode", ["node": node]).map(\.value).reduce(0, +) == 1)
                #expect(metrics.samples("ums_balancer_node_health", ["node": node, "health": "up"]).first?.value == 1)
                #expect(metrics.samples("ums_balancer_node_connections", ["node": node]).count == 1)
            }
            #expect(metrics.samples("ums_balancer_node_mode", ["node": "ums3", "mode": "update"]).first?.value == 1)
            #expect(metrics.samples("ums_balancer_node_mode_overridden", ["node": "ums3"]).first?.value == 1)
            #expect(
                metrics.samples("ums_balancer_node_admin", ["node": "ums2", "admin": "maintenance"]).first?.value == 1)
            // The override to update mode started an update run: exactly one state is current.
            #expect(metrics.samples("ums_balancer_update_state").count == 5)
            #expect(metrics.samples("ums_balancer_update_state").map(\.value).sorted() == [0, 0, 0, 0, 1])
            #expect(metrics.samples("ums_balancer_update_servers_updated").count == 1)
            #expect(metrics.samples("ums_balancer_update_servers_taking_part").count == 1)
            #expect(metrics.samples("ums_balancer_config_generation").first?.value == 1)
            #expect(metrics.samples("ums_balancer_config_last_reload_ok").first?.value == 1)
            #expect(metrics.samples("ums_balancer_connections_total", ["node": "ums1"]).first?.value == 1)
            for name in metrics.types.keys {
                #expect(metrics.help[name] != nil, "\(name) has no HELP")
            }
        }
    }

    @Test func aRejectedReloadShowsInTheMetrics() async throws {
        try await withAdminHarness(reload: { $0.reloadRejected("x.yaml:1:1: bad") }) { harness in
            #expect(try await harness.request("POST", "/reload").status == 422)
            let metrics = try PrometheusText(try await harness.request("GET", "/metrics").body)
            #expect(metrics.samples("ums_balancer_config_last_reload_ok").first?.value == 0)
        }
    }
}
