import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Tells systemd how the service stands (`Type=notify`): the `sd_notify` datagram protocol,
/// written out (a few lines, no libsystemd): one datagram of `KEY=VALUE` lines to the Unix socket
/// named by `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace). Without that
/// variable (not started by systemd) every call does nothing.
struct SystemdNotifier: Sendable {
    /// The socket's address, nil when not under systemd.
    let socketPath: String?
    /// How often systemd wants `WATCHDOG=1` (`WatchdogSec=`), nil when it does not.
    let watchdogInterval: Duration?

    /// The notifier `environment` (the process's, by default) describes.
    init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        let path = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        socketPath = path
        // WATCHDOG_PID, when set, names the process meant: a child that inherited it stays quiet.
        let forUs = environment["WATCHDOG_PID"].map { $0 == "\(getpid())" } ?? true
        if path != nil, forUs, let text = environment["WATCHDOG_USEC"], let usec = Int64(text), usec > 0 {
            watchdogInterval = .microseconds(usec)
        } else {
            watchdogInterval = nil
        }
    }

    /// Sends `fields` as one datagram (`READY=1`, `STATUS=...`); a failure is returned, never thrown:
    /// the balancer serves whether or not systemd listens.
    @discardableResult
    func notify(_ fields: [String]) -> Bool {
        guard let socketPath else { return false }
        let message = fields.joined(separator: "\n")
        #if canImport(Glibc)
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #else
        let descriptor = socket(AF_UNIX, SOCK_DGRAM, 0)
        #endif
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var pathBytes = Array(socketPath.utf8)
        let abstract = pathBytes.first == UInt8(ascii: "@")
        if abstract { pathBytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
        }
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path) ?? 2
        // An abstract name is exactly its bytes; a path carries its terminating NUL.
        let length = socklen_t(pathOffset + pathBytes.count + (abstract ? 0 : 1))
        let sent = message.utf8CString.withUnsafeBufferPointer { text in
            withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                    sendto(descriptor, text.baseAddress, text.count - 1, Int32(MSG_NOSIGNAL), socketAddress, length)
                }
            }
        }
        return sent == message.utf8.count
    }

    /// `MONOTONIC_USEC=` for `RELOADING=1`: CLOCK_MONOTONIC in microseconds, as systemd reads it.
    static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
    }
}
