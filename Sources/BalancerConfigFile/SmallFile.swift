import Foundation

/// Reads a configuration file or a certificate: a regular file of bounded size. A FIFO or a
/// device (`/dev/zero`) named by mistake would otherwise be read forever.
enum SmallFile {
    /// Why a file cannot be read, in words for `FILE:LINE:COL: ...`.
    enum Problem: Error, CustomStringConvertible {
        case missing
        case notARegularFile
        case tooLarge(Int)
        case unreadable

        var description: String {
            switch self {
            case .missing: "no such file"
            case .notARegularFile: "not a regular file"
            case .tooLarge(let limit): "larger than \(limit / 1024 / 1024) MiB"
            case .unreadable: "cannot read file"
            }
        }
    }

    /// The most a configuration file or a certificate may hold.
    static let limit = 4 * 1024 * 1024

    /// The bytes of the regular file at `path`, at most `limit` of them.
    static func read(_ path: String, limit: Int = limit) throws(Problem) -> Data {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else {
            throw FileManager.default.fileExists(atPath: path) ? .unreadable : .missing
        }
        guard attributes[.type] as? FileAttributeType == .typeRegular else { throw .notARegularFile }
        guard (attributes[.size] as? Int ?? 0) <= limit else { throw .tooLarge(limit) }
        guard let data = FileManager.default.contents(atPath: path) else { throw .unreadable }
        return data
    }
}
