import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// Simulated devices (a new connection per profile request, like IGEL OS devices) and consoles
/// (a login now and then) talking to the cluster through the balancer.
final class DemoTraffic: Sendable {
    /// What devices and consoles experienced.
    struct Counts: Sendable {
        var deviceServed = 0
        var deviceFailed = 0
        var servedByNode: [String: Int] = [:]
        var servedInUpdateMode = 0
        var loginsAllowed = 0
        var loginsRefused = 0
        var loginsWarned = 0
        var failures: [String] = []
    }

    private let devicesAddress: SocketAddress
    private let consoleAddress: SocketAddress
    private let devices: Int
    private let speed: Double
    private let client: HTTPClient
    private let state = NIOLockedValueBox(Counts())
    private let running = NIOLockedValueBox(true)
    private let tasks = NIOLockedValueBox<[Task<Void, Never>]>([])

    init(
        devicesAddress: SocketAddress, consoleAddress: SocketAddress, devices: Int, speed: Double,
        group: any EventLoopGroup
    ) {
        self.devicesAddress = devicesAddress
        self.consoleAddress = consoleAddress
        self.devices = devices
        self.speed = speed
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(10))
        // Devices open a new connection for every request, so the balancer routes each one anew.
        configuration.connectionPool = .init(
            idleTimeout: .milliseconds(1), concurrentHTTP1ConnectionsPerHostSoftLimit: 64)
        client = HTTPClient(eventLoopGroupProvider: .shared(group), configuration: configuration)
    }

    var counts: Counts { state.withLockedValue { $0 } }

    func start() {
        var started: [Task<Void, Never>] = []
        for device in 0..<devices {
            started.append(Task { await self.device(device) })
        }
        started.append(Task { await self.console() })
        tasks.withLockedValue { $0 = started }
    }

    /// Stops all traffic and returns the final counts.
    func stop() async -> Counts {
        running.withLockedValue { $0 = false }
        for task in tasks.withLockedValue({ $0 }) { await task.value }
        try? await client.shutdown()
        return counts
    }

    private var isRunning: Bool { running.withLockedValue { $0 } }

    private func device(_ number: Int) async {
        let mac = String(format: "00E0C5%06X", number + 1)
        var requests = 0
        // Bounded: a device stops after 100,000 requests even if nobody stops it.
        while isRunning && requests < 100_000 {
            requests += 1
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(devicesAddress.port!)/device/\(mac)/profile")
            request.headers.add(name: "Connection", value: "close")
            do {
                let response = try await client.execute(request, timeout: .seconds(10))
                let body = try await response.body.collect(upTo: 64 * 1024)
                let json = (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any]
                if response.status == .ok, let node = json?["node"] as? String {
                    let inUpdate = json?["mode"] as? String == "update"
                    state.withLockedValue {
                        $0.deviceServed += 1
                        $0.servedByNode[node, default: 0] += 1
                        if inUpdate { $0.servedInUpdateMode += 1 }
                    }
                } else {
                    recordFailure("device \(mac): HTTP \(response.status.code)")
                }
            } catch {
                recordFailure("device \(mac): \(error)")
            }
            try? await Task.sleep(for: .milliseconds(Int64(60 / speed)))
        }
    }

    private func console() async {
        var logins = 0
        while isRunning && logins < 10_000 {
            logins += 1
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(consoleAddress.port!)/console/login")
            request.method = .POST
            request.headers.add(name: "Connection", value: "close")
            request.body = .bytes(ByteBuffer(string: #"{"user":"admin"}"#))
            do {
                let response = try await client.execute(request, timeout: .seconds(10))
                let body = try await response.body.collect(upTo: 64 * 1024)
                let warned = String(buffer: body).contains("\"warning\"")
                state.withLockedValue {
                    if response.status == .ok { $0.loginsAllowed += 1 } else { $0.loginsRefused += 1 }
                    if warned { $0.loginsWarned += 1 }
                }
            } catch {
                // The balancer closes a refused console connection without an answer.
                state.withLockedValue { $0.loginsRefused += 1 }
            }
            try? await Task.sleep(for: .milliseconds(Int64(400 / speed)))
        }
    }

    private func recordFailure(_ failure: String) {
        state.withLockedValue {
            $0.deviceFailed += 1
            if $0.failures.count < 20 { $0.failures.append(failure) }
        }
    }
}
