import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Free loopback ports for tests. Ports come from below the kernel's ephemeral range, so an
/// outgoing connection never takes a port between the test picking it and binding it, and no
/// port is handed out twice in one test process, so parallel tests never pick the same one.
public enum FreePort {
    private static let handedOut = NIOLockedValueBox<Set<Int>>([])

    /// A port that is free on `host` and that no other test in this process was given.
    public static func pick(host: String = "127.0.0.1") throws -> Int {
        let range = 10_000..<max(10_001, ephemeralRangeStart)
        for _ in 0..<200 {
            let port = Int.random(in: range)
            guard handedOut.withLockedValue({ $0.insert(port).inserted }) else { continue }
            if isFree(port, host: host) { return port }
        }
        throw TestKitError("no free port found on \(host)")
    }

    private static func isFree(_ port: Int, host: String) -> Bool {
        guard
            let channel = try? ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .bind(host: host, port: port).wait()
        else { return false }
        try? channel.close().wait()
        return true
    }

    /// The first port the kernel uses for outgoing connections (32768 unless configured otherwise).
    private static let ephemeralRangeStart: Int = {
        let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        return text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.flatMap { Int($0) } ?? 32_768
    }()
}

/// A failure in the test kit itself, with what it was doing.
public struct TestKitError: Error, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}
