import BalancerCore
import Foundation
import Synchronization

/// Why the admin API cannot start; said before anything listens.
public enum AdminSetupError: Error, CustomStringConvertible {
    /// A non-loopback bind without a token would hand the balancer to anyone on the network.
    case tokenRequired(bind: Endpoint)
    /// The token file cannot be read.
    case unreadableTokenFile(path: String, reason: String)
    /// The token file holds nothing but whitespace.
    case emptyTokenFile(path: String)

    public var description: String {
        switch self {
        case .tokenRequired(let bind):
            "admin bind \(bind) is not a loopback address: set admin.token_file, or bind to 127.0.0.1"
        case .unreadableTokenFile(let path, let reason): "admin token file \(path): cannot read: \(reason)"
        case .emptyTokenFile(let path): "admin token file \(path) is empty"
        }
    }
}

/// The bearer token the admin API expects; compared in constant time.
public struct AdminToken: Sendable {
    fileprivate let bytes: [UInt8]

    /// A token as given; surrounding whitespace is ignored.
    public init?(_ text: String) {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { return nil }
        bytes = Array(trimmed.utf8)
    }

    /// Reads the token from `path` (surrounding whitespace ignored).
    public static func read(from path: String) throws(AdminSetupError) -> AdminToken {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .unreadableTokenFile(path: path, reason: (error as NSError).localizedDescription)
        }
        guard let token = AdminToken(text) else { throw .emptyTokenFile(path: path) }
        return token
    }

    /// The token for `settings`: nil when none is configured, which only a loopback bind allows.
    public static func load(for settings: AdminSettings) throws(AdminSetupError) -> AdminToken? {
        guard let path = settings.tokenFile else {
            guard isLoopback(settings.bind.host) else { throw .tokenRequired(bind: settings.bind) }
            return nil
        }
        return try read(from: path)
    }

    /// Whether `candidate` is this token; the time taken does not depend on where they differ.
    public func matches(_ candidate: some StringProtocol) -> Bool {
        let given = Array(candidate.utf8)
        var difference = UInt8(truncatingIfNeeded: given.count ^ bytes.count)
        for index in bytes.indices {
            difference |= bytes[index] ^ (index < given.count ? given[index] : 0)
        }
        return difference == 0
    }

    /// 127.0.0.0/8 and ::1: addresses no other machine can reach.
    public static func isLoopback(_ host: String) -> Bool {
        if host == "::1" || host == "0:0:0:0:0:0:0:1" || host == "localhost" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }
}

/// The admin token in force. A reload reads its file again, so an operator rotates the token by
/// rewriting the file and reloading; a file that cannot be read keeps the token in force.
public final class AdminTokens: Sendable {
    private let current: Mutex<AdminToken?>

    /// Starts with `token` (nil: no token is asked for).
    public init(_ token: AdminToken?) {
        current = Mutex(token)
    }

    /// The token requests must carry, if any.
    public var token: AdminToken? {
        current.withLock { $0 }
    }

    /// Reads the token file of `settings` again; true when the token changed. Without a token file
    /// there is nothing to read (a loopback bind without a token stays so until a restart).
    @discardableResult
    public func reload(for settings: AdminSettings) throws(AdminSetupError) -> Bool {
        guard let path = settings.tokenFile else { return false }
        let fresh = try AdminToken.read(from: path)
        return current.withLock { current in
            defer { current = fresh }
            return current?.bytes != fresh.bytes
        }
    }
}
