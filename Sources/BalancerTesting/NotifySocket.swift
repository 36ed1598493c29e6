import Foundation
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A stand-in for systemd's `NOTIFY_SOCKET`: a Unix datagram socket the test binds in a temporary
/// folder, collecting what the balancer sends (`READY=1`, `STATUS=...`).
public final class NotifySocket: Sendable {
    /// The socket's path: pass it as `NOTIFY_SOCKET`.
    public let path: String
    private let descriptor: Int32
    private let received = NIOLockedValueBox<[String]>([])

    public init(in folder: TemporaryDirectory) throws {
        path = folder.url.appendingPathComponent("notify.sock").path
        #if canImport(Glibc)
        descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        #else
        descriptor = socket(AF_UNIX, SOCK_DGRAM, 0)
        #endif
        guard descriptor >= 0 else { throw TestKitError("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(descriptor)
            throw TestKitError("socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw TestKitError("bind \(path): \(reason)")
        }
    }

    deinit { close(descriptor) }

    /// Every datagram received so far, oldest first.
    public var messages: [String] {
        drain()
        return received.withLockedValue { $0 }
    }

    /// Waits until a datagram after the first `skipping` satisfies `accept`; returns its index.
    @discardableResult
    public func waitFor(
        after skipping: Int = 0, timeout: Duration = .seconds(20), _ what: String,
        _ accept: (String) -> Bool
    ) async throws -> Int {
        let deadline = ContinuousClock.now + timeout
        while true {
            let all = messages
            if let index = all.indices.dropFirst(skipping).first(where: { accept(all[$0]) }) { return index }
            guard ContinuousClock.now < deadline else {
                throw TestKitError("no notification \(what) within \(timeout); received: \(all)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Reads what is queued, without blocking; under the lock, so the order stays the order sent.
    private func drain() {
        received.withLockedValue { received in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = buffer.withUnsafeMutableBytes {
                    recv(descriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT))
                }
                guard count > 0 else { return }
                received.append(String(decoding: buffer[0..<count], as: UTF8.self))
            }
        }
    }
}
