#if canImport(Glibc)
import Glibc

/// A blocking client on a plain socket, for what NIO does not offer: a reset (SO_LINGER 0) close,
/// bytes sent the moment the handshake completes.
public enum RawClient {
    /// Connects to 127.0.0.1:`port`, sends `request`, reads until the peer closes (or 5 s pass),
    /// then closes with a reset; returns what was read.
    public static func exchangeThenReset(port: Int, _ request: String) throws -> String {
        let descriptor = try connectAndSend(port: port, request)
        defer {
            var linger = linger(l_onoff: 1, l_linger: 0)
            setsockopt(descriptor, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
            close(descriptor)
        }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<1000 {
            let count = recv(descriptor, &buffer, buffer.count, 0)
            guard count > 0 else { break }
            received += buffer[0..<count]
        }
        return String(decoding: received, as: UTF8.self)
    }

    /// Connects to 127.0.0.1:`port`, sends `text` at once (a device's request right after its
    /// handshake) and returns the first line that comes back (within 5 s).
    public static func sendAtOnceAndReadLine(port: Int, _ text: String) throws -> String {
        let descriptor = try connectAndSend(port: port, text)
        defer { close(descriptor) }
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while recv(descriptor, &byte, 1, 0) == 1, byte != UInt8(ascii: "\n") { line.append(byte) }
        return String(decoding: line, as: UTF8.self)
    }

    /// A socket connected to 127.0.0.1:`port` (reads give up after 5 s) that has sent `text`.
    private static func connectAndSend(port: Int, _ text: String) throws -> CInt {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw TestKitError("socket failed") }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw TestKitError("connect to \(port): \(reason)")
        }
        let bytes = Array(text.utf8)
        guard send(descriptor, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else {
            close(descriptor)
            throw TestKitError("send to \(port) failed")
        }
        return descriptor
    }
}
#endif
