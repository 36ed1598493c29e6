/// Listening sockets handed over by systemd socket activation (`sd_listen_fds(3)`): descriptors
/// from 3 on, `LISTEN_FDS` of them, named by `LISTEN_FDNAMES` (`FileDescriptorName=` in the
/// `.socket` unit), meant for the process `LISTEN_PID`.
public struct SocketActivation: Sendable, Equatable {
    /// The first passed descriptor (`SD_LISTEN_FDS_START`).
    public static let firstDescriptor: Int32 = 3

    /// A passed socket and the name it was given.
    public struct Socket: Sendable, Equatable {
        public var name: String
        public var descriptor: Int32

        public init(name: String, descriptor: Int32) {
            self.name = name
            self.descriptor = descriptor
        }
    }

    public var sockets: [Socket]

    public init(sockets: [Socket]) {
        self.sockets = sockets
    }

    /// What `environment` passes to process `processID`: nil when nothing was passed, or it was
    /// meant for another process (a parent's variables that leaked into a child).
    public init?(environment: [String: String], processID: Int32) throws(SocketActivationError) {
        guard let count = environment["LISTEN_FDS"] else { return nil }
        guard let pid = environment["LISTEN_PID"].flatMap({ Int32($0) }), pid == processID else { return nil }
        guard let number = Int32(count), number >= 0, number < 1024 else {
            throw .malformed("LISTEN_FDS '\(count)' is not a number of descriptors")
        }
        let names = environment["LISTEN_FDNAMES"].map { $0.split(separator: ":", omittingEmptySubsequences: false) }
        guard let names, names.count == Int(number) else {
            throw .malformed(
                "LISTEN_FDNAMES names \(environment["LISTEN_FDNAMES"] == nil ? "no" : "\(names?.count ?? 0)") of"
                    + " \(number) sockets: give each one FileDescriptorName= the name of its listener")
        }
        var sockets: [Socket] = []
        for (offset, name) in names.enumerated() {
            if sockets.contains(where: { $0.name == name }) {
                throw .malformed("two sockets are named '\(name)': each listener takes one")
            }
            sockets.append(Socket(name: String(name), descriptor: Self.firstDescriptor + Int32(offset)))
        }
        self.sockets = sockets
    }

    /// The descriptor passed for `listener`, if any.
    public func descriptor(for listener: String) -> Int32? {
        sockets.first { $0.name == listener }?.descriptor
    }

    /// Names no listener in `listeners` takes: a typo in the `.socket` unit.
    public func unmatched(by listeners: [String]) -> [String] {
        sockets.map(\.name).filter { !listeners.contains($0) }
    }
}

/// Why the passed sockets cannot be used.
public enum SocketActivationError: Error, Equatable, CustomStringConvertible {
    case malformed(String)

    public var description: String {
        switch self {
        case .malformed(let reason): "socket activation: \(reason)"
        }
    }
}
