#if os(Linux)
import BalancerCore
import BalancerDataPath
import CBalancerLinux
import Glibc
import NIOConcurrencyHelpers
import NIOCore

/// The listening socket of a listener the relay serves, shared by every relay loop: each loop
/// accepts from it (EPOLLEXCLUSIVE wakes one loop per connection) and keeps the connections it accepted.
public final class RelayListener: Sendable {
    let fd: CInt
    let name: String
    /// The address it is bound to.
    public let localAddress: SocketAddress?
    private let context: NIOLockedValueBox<ListenerContext>
    private let key: Int
    private let registry: ConnectionRegistry
    private let loops: RelayLoops

    private init(
        fd: CInt, name: String, context: NIOLockedValueBox<ListenerContext>, key: Int, registry: ConnectionRegistry,
        loops: RelayLoops
    ) {
        self.fd = fd
        self.name = name
        self.context = context
        self.key = key
        self.registry = registry
        self.loops = loops
        self.localAddress = Self.boundAddress(fd)
    }

    /// Binds `address` and starts accepting on every loop; `context` is read for each new connection.
    public static func open(
        _ address: SocketAddress,
        name: String,
        context: NIOLockedValueBox<ListenerContext>,
        key: Int,
        registry: ConnectionRegistry,
        loops: RelayLoops
    ) async throws -> RelayListener {
        try await start(try bind(address), name: name, context: context, key: key, registry: registry, loops: loops)
    }

    /// Accepts on a listening socket bound by someone else (systemd socket activation) on every loop.
    public static func adopt(
        _ fd: CInt,
        name: String,
        context: NIOLockedValueBox<ListenerContext>,
        key: Int,
        registry: ConnectionRegistry,
        loops: RelayLoops
    ) async throws -> RelayListener {
        // systemd passes blocking sockets unless the unit says NonBlocking=yes; the loops need
        // accept to answer EAGAIN, and commands the balancer runs must not inherit the socket.
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0, fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 else {
            throw IOError(errnoCode: errno, reason: "the socket passed for listener \(name)")
        }
        var one: CInt = 1
        setsockopt(fd, CInt(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<CInt>.size))
        return try await start(fd, name: name, context: context, key: key, registry: registry, loops: loops)
    }

    private static func start(
        _ fd: CInt,
        name: String,
        context: NIOLockedValueBox<ListenerContext>,
        key: Int,
        registry: ConnectionRegistry,
        loops: RelayLoops
    ) async throws -> RelayListener {
        let socket = RelayListener(
            fd: fd, name: name, context: context, key: key, registry: registry, loops: loops)
        for loop in loops.loops {
            let watched = await loop.submit {
                loop.watch(fd, for: .listener(socket), events: socket.events, levelTriggered: true)
            }
            if !watched {
                let error = IOError(errnoCode: errno, reason: "epoll_ctl")
                await socket.close()
                throw error
            }
        }
        return socket
    }

    /// What each loop watches the socket for: with several loops, one is woken per connection.
    var events: UInt32 {
        EPOLLIN.rawValue | (loops.loops.count > 1 ? EPOLLEXCLUSIVE.rawValue : 0)
    }

    /// Stops accepting: every loop lets go of the socket before it is closed, so no loop can
    /// accept from a descriptor number that was reused meanwhile.
    public func close() async {
        for loop in loops.loops {
            await loop.submit { [fd] in loop.unwatch(fd) }
        }
        Glibc.close(fd)
    }

    /// Accepts what is waiting (a bounded batch, so one busy listener cannot starve the loop).
    func accept(on loop: RelayLoop) {
        for _ in 0..<16 {
            guard loop.budget.take(listener: name) else {
                loop.waitForDescriptors(self)
                return
            }
            var peer = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let client = withUnsafeMutablePointer(to: &peer) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    cbl_accept4(fd, $0, &length, CInt(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue))
                }
            }
            if client < 0 {
                let error = errno
                loop.budget.give()
                errno = error
                switch errno {
                case EINTR, ECONNABORTED: continue
                case EAGAIN: return
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    loop.pause(self)
                    return
                default: return
                }
            }
            let listener = context.withLockedValue { $0 }
            RelayConnection.start(
                client: client, peer: Self.socketAddress(peer, described: false), listener: listener, listenerKey: key,
                registry: registry, loop: loop)
        }
    }

    // MARK: - Sockets

    private static func bind(_ address: SocketAddress) throws -> CInt {
        let family = address.protocol.rawValue
        let fd = socket(family, CInt(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        var one: CInt = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
        // Accepted sockets inherit TCP_NODELAY: a device's small requests go out at once.
        setsockopt(fd, CInt(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<CInt>.size))
        let bound = address.withSockAddr { Glibc.bind(fd, $0, socklen_t($1)) }
        guard bound == 0, listen(fd, 4096) == 0 else {
            let error = IOError(errnoCode: errno, reason: bound == 0 ? "listen" : "bind")
            Glibc.close(fd)
            throw error
        }
        return fd
    }

    private static func boundAddress(_ fd: CInt) -> SocketAddress? {
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let got = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return got == 0 ? socketAddress(address) : nil
    }

    /// `described: false` leaves the text form out until a log line asks for it (`ipAddress`):
    /// formatting it costs a printf per accepted connection.
    static func socketAddress(_ storage: sockaddr_storage, described: Bool = true) -> SocketAddress? {
        var storage = storage
        let family = CInt(storage.ss_family)
        return withUnsafePointer(to: &storage) { pointer in
            switch family {
            case AF_INET:
                pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                    described ? SocketAddress($0.pointee) : SocketAddress($0.pointee, host: "")
                }
            case AF_INET6:
                pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    described ? SocketAddress($0.pointee) : SocketAddress($0.pointee, host: "")
                }
            default:
                nil
            }
        }
    }
}
#endif
