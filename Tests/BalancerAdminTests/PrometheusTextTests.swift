import Testing

/// The test parser itself must refuse what Prometheus refuses, or its approval means nothing.
@Suite struct PrometheusTextTests {
    @Test func acceptsTheFormatsFeatures() throws {
        let text = """
            # HELP requests_total Requests \\\\ served,\\nby code.
            # TYPE requests_total counter
            requests_total{code="200",path="/a \\"b\\"\\\\c\\n"} 1027 1395066363000
            requests_total{code="500",} 3
            # a plain comment
            # TYPE latency_seconds histogram
            latency_seconds_bucket{le="0.5"} 1.5e+01
            latency_seconds_bucket{le="+Inf"} 20
            latency_seconds_sum 3.25
            latency_seconds_count 20
            up NaN
            down -Inf

            """
        let parsed = try PrometheusText(text)
        #expect(parsed.samples.count == 8)
        #expect(parsed.samples("requests_total", ["path": "/a \"b\"\\c\n"]).first?.value == 1027)
        #expect(parsed.types["latency_seconds"] == "histogram")
        #expect(parsed.help["requests_total"] == "Requests \\ served,\nby code.")
    }

    @Test(arguments: [
        "1metric 1",  // name starts with a digit
        "metric-name 1",  // dash in a name
        "metric{label=\"unterminated} 1",
        "metric{label=\"bad \\t escape\"} 1",
        "metric{label=unquoted} 1",
        "metric{0label=\"x\"} 1",
        "metric{a=\"1\",a=\"2\"} 1",  // repeated label
        "metric 1.2.3",
        "metric one",
        "metric",
        "metric 1 notatimestamp",
        "metric 1 2 3",
        "# TYPE metric countr",
        "# TYPE metric counter\n# TYPE metric gauge",
        "metric 1\nmetric 2",  // duplicate series
        "a 1\nb 1\na{x=\"1\"} 1",  // family not together
        "metric 1\n# TYPE metric gauge",  // TYPE after its samples
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1",  // no +Inf bucket
    ])
    func rejectsMalformedLines(_ text: String) {
        #expect(throws: PrometheusText.ParseError.self) { try PrometheusText(text) }
    }
}
