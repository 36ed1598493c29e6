import Logging
import NIOConcurrencyHelpers

/// A `LogHandler` that keeps every record, so tests can assert what the balancer said.
public final class LogCapture: Sendable {
    /// One captured log record.
    public struct Record: Sendable, CustomStringConvertible {
        public var level: Logger.Level
        public var message: String
        public var metadata: [String: String]

        public var description: String {
            "\(level) \(message) "
                + metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }
    }

    private let records = NIOLockedValueBox<[Record]>([])

    public init() {}

    /// A logger whose records land here.
    public func logger(label: String = "test") -> Logger {
        Logger(label: label) { _ in Handler(capture: self) }
    }

    /// Every record so far.
    public var all: [Record] { records.withLockedValue { $0 } }

    /// Records with `message`.
    public func records(_ message: String) -> [Record] {
        all.filter { $0.message == message }
    }

    fileprivate func append(_ record: Record) {
        records.withLockedValue { $0.append(record) }
    }

    private struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var merged = metadata
            if let extra = event.metadata { merged.merge(extra) { $1 } }
            capture.append(
                Record(
                    level: event.level,
                    message: event.message.description,
                    metadata: merged.mapValues { "\($0)" }
                ))
        }
    }
}
