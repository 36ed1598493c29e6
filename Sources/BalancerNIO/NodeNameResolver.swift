import BalancerCore
import BalancerDataPath
import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Looks up the addresses of nodes named by host name, off the event loops and relay threads (on
/// NIO's blocking-I/O thread pool), before the listeners open and again on each health interval.
/// The data path then only reads the address it found: a host name costs nothing per connection,
/// and a name that stops resolving makes its connects fail with `cannot resolve NAME`.
struct NodeNameResolver: Sendable {
    let directory: NodeDirectory
    let logger: Logger
    var threadPool: NIOThreadPool = .singleton

    /// Resolves every node's name once, concurrently.
    func resolveAll() async {
        await withTaskGroup(of: Void.self) { group in
            for (node, name) in directory.hostNames {
                group.addTask { await resolve(node, name: name) }
            }
        }
    }

    /// Resolves `node`'s host `name` and records the result.
    func resolve(_ node: NodeID, name: String) async {
        let address = try? await threadPool.runIfActive { Self.lookUp(name) }
        if directory.resolved(node, name: name, to: address ?? nil) {
            if let address = address ?? nil {
                logger.notice(
                    "node name resolved", metadata: ["node": "\(node)", "name": "\(name)", "address": "\(address)"])
            } else {
                logger.warning("node name does not resolve", metadata: ["node": "\(node)", "name": "\(name)"])
            }
        }
    }

    /// The first address `name` resolves to (port 0), or nil.
    static func lookUp(_ name: String) -> SocketAddress? {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = CInt(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(name, nil, &hints, &list) == 0, let first = list else { return nil }
        defer { freeaddrinfo(list) }
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let current = entry {
            if let address = current.pointee.ai_addr {
                switch current.pointee.ai_family {
                case AF_INET:
                    return address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                        SocketAddress($0.pointee, host: name)
                    }
                case AF_INET6:
                    return address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                        SocketAddress($0.pointee, host: name)
                    }
                default:
                    break
                }
            }
            entry = current.pointee.ai_next
        }
        return nil
    }
}
