import AsyncHTTPClient
import BalancerTesting
import Foundation
import Testing

/// `/metrics` of a real `ums-balancer run` that has carried traffic, checked by Prometheus's own
/// `promtool check metrics` (Debian `prometheus`), and read for what an operator's alerts rely on.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct MetricsPromtoolTests {
    @Test func liveMetricsPassPromtoolWithOneReasonVocabularyAndResetsAfterAnExchangeAsCloses() async throws {
        let certificates = try await TestCertificates.generate()
        let cluster = try await SimulatedCluster.start(count: 1)
        let folder = try TemporaryDirectory()
        let (devices, web, offload, admin) = (
            try FreePort.pick(), try FreePort.pick(), try FreePort.pick(), try FreePort.pick()
        )
        let path = try folder.write(
            "b.yaml",
            """
            listeners:
              - { name: devices, bind: 127.0.0.1:\(devices), backend_port: \(cluster.devicePort), class: device }
              - name: web
                bind: 127.0.0.1:\(web)
                backend_port: \(cluster.consolePort)
                class: by-sni
                sni: { console: [ums-console.example.com], default: console }
              - name: offload
                bind: 127.0.0.1:\(offload)
                backend_port: \(cluster.consolePort)
                class: by-path
                tls: { certificate: \(certificates.path("balancer.pem")), private_key: \(certificates.path("balancer.key")) }
                backend_tls: { verify: none }
                paths: { device: [/device-connector/], default: console }
            nodes:
              - { id: ums1, host: 127.0.0.11 }
            health: { interval: 100ms, timeout: 500ms, rise: 1, fall: 2 }
            status: { url: "http://{host}:\(cluster.controlPort)/status" }
            admin: { bind: 127.0.0.1:\(admin) }
            shutdown_grace: 2s
            threads: 1
            """)
        let process = try await ProcessHarness("ums-balancer", ["run", "--config", path])
        defer {
            process.kill()
            folder.remove()
            certificates.directory.remove()
        }
        do {
            try await process.waitForOutput("listener=offload")

            // A device fetches its profile; the node answers and closes; the device then resets
            // instead of closing cleanly (as many clients do): a normal close, not an error.
            let answer = try RawClient.exchangeThenReset(
                port: devices,
                "GET /device/00E0C5000001/profile HTTP/1.1\r\nHost: ums\r\nConnection: close\r\n\r\n")
            #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer)")
            // Plain HTTP on both TLS listener types: the same fault, the same reason label.
            _ = try RawClient.exchangeThenReset(port: web, "GET / HTTP/1.1\r\nHost: ums\r\n\r\n")
            _ = try RawClient.exchangeThenReset(port: offload, "GET / HTTP/1.1\r\nHost: ums\r\n\r\n")
            // by-path requests: one no node can answer (this node speaks no TLS), one over the header limit.
            let tls = ["--cacert", certificates.path("ca.pem"), "--http1.1"]
            let unavailable = try await Curl.run(tls + ["https://127.0.0.1:\(offload)/console/login"])
            #expect(unavailable.first?.status == 503)
            let oversized = try await Curl.run(
                tls + ["-H", "X-Big: \(String(repeating: "a", count: 20_000))", "https://127.0.0.1:\(offload)/"])
            #expect(oversized.first?.status == 431)
            // A reload, accepted, puts the reload counter in the text too.
            process.send(SIGHUP)
            try await process.waitForOutput("configuration reloaded")

            var metrics = try PrometheusText("")
            var text = ""
            let deadline = ContinuousClock.now + .seconds(10)
            while true {
                let response = try await HTTPClient.shared.execute(
                    HTTPClientRequest(url: "http://127.0.0.1:\(admin)/metrics"), timeout: .seconds(5))
                text = String(buffer: try await response.body.collect(upTo: 4 * 1024 * 1024))
                metrics = try PrometheusText(text)
                let counted = metrics.samples("ums_balancer_connections_total", ["listener": "devices"]).count
                let failures = metrics.samples("ums_balancer_handshake_failures_total").count
                let requests = metrics.samples("ums_balancer_requests_total").count
                let limits = metrics.samples("ums_balancer_http_limits_total").count
                if counted > 0, failures >= 2, requests > 0, limits > 0 { break }
                guard ContinuousClock.now < deadline else { throw TestKitError("metrics never counted:\n\(text)") }
                try await Task.sleep(for: .milliseconds(50))
            }

            let file = try folder.write("metrics.txt", text)
            let check = try await ProcessHarness.runProgram(
                at: "/bin/sh", ["-c", "promtool check metrics < \"$0\"", file])
            #expect(check.status == 0, "promtool: \(check.output)")
            #expect(check.output.isEmpty, "promtool: \(check.output)")

            let devicesClosed = metrics.samples(
                "ums_balancer_connections_total", ["listener": "devices", "outcome": "closed"])
            #expect(devicesClosed.map(\.value) == [1], "\(text)")
            #expect(metrics.samples("ums_balancer_connections_total", ["outcome": "error"]).isEmpty, "\(text)")
            let sni = metrics.samples("ums_balancer_handshake_failures_total", ["listener": "web"])
            let path = metrics.samples("ums_balancer_handshake_failures_total", ["listener": "offload"])
            #expect(sni.map { $0.labels["reason"] } == ["not-tls"], "\(text)")
            #expect(path.map { $0.labels["reason"] } == ["not-tls"], "\(text)")
            #expect(
                metrics.samples("ums_balancer_reloads_total", ["result": "applied"]).map(\.value) == [1], "\(text)")
            let requests = metrics.samples("ums_balancer_requests_total", ["listener": "offload"])
            #expect(
                requests.map { [$0.labels["class"], $0.labels["status"], $0.labels["outcome"]] }
                    == [["console", "503", "unavailable"]], "\(text)")
            let limits = metrics.samples("ums_balancer_http_limits_total", ["listener": "offload"])
            #expect(limits.map { $0.labels["limit"] } == ["header-size"], "\(text)")
            for name in metrics.types.keys {
                #expect(metrics.help[name] != nil, "\(name) has no HELP")
                if metrics.types[name] == "gauge" { #expect(!name.hasSuffix("_total"), "gauge \(name)") }
            }
        } catch {
            process.kill()
            await cluster.stop()
            throw error
        }
        process.send(SIGTERM)
        _ = try await process.waitForExit(timeout: .seconds(15))
        await cluster.stop()
    }
}
