import BalancerTesting
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Testing

/// SIGHUP reloads of the real process while devices keep talking to it.
@Suite(.timeLimit(.minutes(3)))
struct ReloadUnderLoadTests {
    func config(port: Int, extraPort: Int, backendPort: Int, variant: Int) -> String {
        var text = """
            listeners:
              - { name: devices, bind: 127.0.0.1:\(port), backend_port: \(backendPort), class: device }

            """
        if variant % 2 == 1 {
            text += "  - { name: extra, bind: 127.0.0.1:\(extraPort), backend_port: \(backendPort), class: device }\n"
        }
        text += """
            nodes:
              - { id: ums1, host: 127.0.0.1 }
            health: { interval: 1h }
            timeouts: { connect: 2s, idle: \(10 + variant)m }
            shutdown_grace: 5s
            threads: 1

            """
        return text
    }

    /// Keeps one connection open and streams numbered chunks through it, checking every echo.
    func stream(_ address: SocketAddress, until stop: NIOLockedValueBox<Bool>) async throws -> Int {
        let connection = try await TestClient.connect(to: address)
        return try await connection.executeThenClose { inbound, outbound in
            var iterator = inbound.makeAsyncIterator()
            var sent = 0
            var received = ByteBuffer()
            for round in 0..<10_000 where !stop.withLockedValue({ $0 }) {
                let chunk = TestBackend.payload(size: 1024, offset: round * 1024)
                try await outbound.write(chunk)
                sent += chunk.readableBytes
                while received.readableBytes < sent, var more = try await iterator.next() {
                    received.writeBuffer(&more)
                }
                try await Task.sleep(for: .milliseconds(10))
            }
            outbound.finish()
            #expect(received == TestBackend.payload(size: sent), "a long-lived stream lost or changed bytes")
            return sent
        }
    }

    @Test func fiftyReloadsAlternatingValidAndInvalidDropNoConnection() async throws {
        let backend = try await TestBackend.start(name: "ums1", behavior: .echo)
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let port = try FreePort.pick()
        let extraPort = try FreePort.pick()
        let path = try dir.write(
            "b.yaml", config(port: port, extraPort: extraPort, backendPort: backend.port, variant: 0))
        let balancer = try await ProcessHarness("ums-balancer", ["run", "--config", path])
        defer { balancer.kill() }
        try await balancer.waitForOutput("listening")
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: port)

        let stop = NIOLockedValueBox(false)
        let failures = NIOLockedValueBox<[String]>([])
        let streams = (0..<3).map { _ in Task { try await stream(address, until: stop) } }
        let short = (0..<2).map { worker in
            Task {
                var done = 0
                while !stop.withLockedValue({ $0 }) && done < 20_000 {
                    do {
                        let connection = try await TestClient.connect(to: address)
                        let echoed = try await connection.executeThenClose { inbound, outbound in
                            try await outbound.write(ByteBuffer(string: "short \(worker) \(done)"))
                            outbound.finish()
                            return String(buffer: try await TestClient.readAll(inbound))
                        }
                        if echoed != "short \(worker) \(done)" {
                            failures.withLockedValue { $0.append("echo: \(echoed)") }
                        }
                    } catch {
                        failures.withLockedValue { $0.append("\(error)") }
                    }
                    done += 1
                }
                return done
            }
        }

        for reload in 1...50 {
            let valid = reload % 2 == 0
            let text =
                valid
                ? config(port: port, extraPort: extraPort, backendPort: backend.port, variant: reload / 2)
                : "listeners:\n  - { name: devices, bind: 127.0.0.1:\(port), backend_port: 0, class: device }\nnodes: []\n"
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let marker = valid ? "configuration reloaded" : "reload rejected"
            let before = balancer.output.components(separatedBy: marker).count
            balancer.send(SIGHUP)
            let deadline = ContinuousClock.now + .seconds(10)
            while balancer.output.components(separatedBy: marker).count == before {
                guard ContinuousClock.now < deadline else { throw TestKitError("reload \(reload) not reported") }
                try await Task.sleep(for: .milliseconds(10))
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        try await Task.sleep(for: .milliseconds(200))
        stop.withLockedValue { $0 = true }
        var streamed = 0
        for task in streams { streamed += try await task.value }
        var shortDone = 0
        for task in short { shortDone += await task.value }

        #expect(failures.withLockedValue { $0 }.isEmpty, "\(failures.withLockedValue { $0.prefix(5) })")
        #expect(shortDone >= 3, "short connections ran during the reloads")
        #expect(streamed > 3 * 1024)
        let output = balancer.output
        #expect(output.components(separatedBy: "configuration reloaded").count - 1 == 25)
        #expect(output.components(separatedBy: "reload rejected").count - 1 == 25)
        #expect(output.contains("\(path):2:59: backend_port 0 is out of range 1-65535"))
        #expect(output.contains("generation=26"))
        balancer.send(SIGTERM)
        #expect(try await balancer.waitForExit() == 0)
        await backend.stop()
    }
}
