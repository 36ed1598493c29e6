import NIOCore
import NIOPosix

/// Free loopback ports, found by letting the kernel pick one.
public enum FreePort {
    /// A port that was free on `host` a moment ago.
    public static func pick(host: String = "127.0.0.1") throws -> Int {
        let group = MultiThreadedEventLoopGroup.singleton
        let channel = try ServerBootstrap(group: group).bind(host: host, port: 0).wait()
        defer { try? channel.close().wait() }
        guard let port = channel.localAddress?.port else { throw TestKitError("no port bound on \(host)") }
        return port
    }
}

/// A failure in the test kit itself, with what it was doing.
public struct TestKitError: Error, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}
