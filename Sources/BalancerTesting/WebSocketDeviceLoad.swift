import NIOConcurrencyHelpers
import NIOCore

/// IGEL OS 12 devices on long-lived WebSockets: each sends a numbered text message, waits for its
/// echo, pauses, and sends the next. When its WebSocket ends (a close frame, or the connection
/// dropped), it reconnects and sends the unanswered message again. A message is lost for good
/// when it never got its echo.
public final class WebSocketDeviceLoad: Sendable {
    /// How one WebSocket of a device ended.
    public enum End: Sendable, Hashable {
        /// The server sent a close frame with this code.
        case closeFrame(UInt16?)
        /// The connection ended without a close frame (a balancer's drain, a reset).
        case dropped
        /// The device closed it when it was stopped.
        case stopped
    }

    /// One WebSocket a device held: the node and mode it named, and how it ended.
    public struct Connection: Sendable, Hashable {
        public var device: Int
        public var node: String
        public var mode: String
        public var echoes: Int
        public var end: End
    }

    /// What the devices saw.
    public struct Summary: Sendable {
        /// Distinct messages sent (a resend after a reconnect counts once).
        public var sent = 0
        /// Messages whose echo came back.
        public var echoed = 0
        public var connections: [Connection] = []
        /// Connects that failed (the device tried again).
        public var connectFailures: [String] = []
        /// Answers that were not the echo expected.
        public var wrongAnswers: [String] = []

        /// Messages sent that never got their echo.
        public var lost: Int { sent - echoed }
        /// WebSockets opened after the first one of each device.
        public var reconnects: Int { max(0, connections.count - Set(connections.map(\.device)).count) }
    }

    private let state = NIOLockedValueBox(Summary())
    private let stopped = NIOLockedValueBox(false)
    private let tasks = NIOLockedValueBox<[Task<Void, Never>]>([])

    private init() {}

    /// Starts `devices` devices; `connect` opens device N's WebSocket (through the balancer).
    public static func start(
        devices: Int, pause: Duration = .milliseconds(20),
        connect: @escaping @Sendable (Int) async throws -> TestWebSocket
    ) -> WebSocketDeviceLoad {
        let load = WebSocketDeviceLoad()
        let started = (0..<devices).map { device in
            Task { await load.run(device: device, pause: pause, connect: connect) }
        }
        load.tasks.withLockedValue { $0 = started }
        return load
    }

    /// What has been seen so far.
    public var summary: Summary { state.withLockedValue { $0 } }

    /// Stops the devices: each finishes its message in flight (for at most `grace`), then closes.
    public func stop(grace: Duration = .seconds(10)) async -> Summary {
        stopped.withLockedValue { $0 = true }
        let running = tasks.withLockedValue { $0 }
        let watchdog = Task {
            try? await Task.sleep(for: grace)
            for task in running { task.cancel() }
        }
        for task in running { await task.value }
        watchdog.cancel()
        return summary
    }

    private var isStopped: Bool { stopped.withLockedValue { $0 } }

    private func run(
        device: Int, pause: Duration, connect: @Sendable (Int) async throws -> TestWebSocket
    ) async {
        var number = 0
        var pending: String?
        // Bounded: a device gives up after 100,000 connects or messages, or when cancelled.
        for _ in 0..<100_000 {
            if Task.isCancelled || (isStopped && pending == nil) { break }
            let socket: TestWebSocket
            do {
                socket = try await connect(device)
            } catch {
                state.withLockedValue { if $0.connectFailures.count < 100 { $0.connectFailures.append("\(error)") } }
                try? await Task.sleep(for: .milliseconds(50))
                continue
            }
            var echoes = 0
            var end = End.stopped
            while !Task.isCancelled {
                if pending == nil {
                    if isStopped { break }
                    number += 1
                    pending = "device \(device) message \(number)"
                    state.withLockedValue { $0.sent += 1 }
                }
                guard let message = pending else { break }
                do {
                    try await socket.send(message)
                    switch try await socket.receive(timeout: .seconds(5)) {
                    case .text(message):
                        echoes += 1
                        pending = nil
                        state.withLockedValue { $0.echoed += 1 }
                        try? await Task.sleep(for: pause)
                        continue
                    case .close(let code, _):
                        end = .closeFrame(code)
                    case nil:
                        end = .dropped
                    case let other?:
                        state.withLockedValue { $0.wrongAnswers.append("\(message): \(other)") }
                        end = .dropped
                    }
                } catch {
                    end = .dropped
                }
                break
            }
            if end == .stopped { await socket.close() } else { await socket.abort() }
            let connection = Connection(
                device: device, node: socket.node ?? "?", mode: socket.mode ?? "?", echoes: echoes, end: end)
            state.withLockedValue { $0.connections.append(connection) }
        }
    }
}
