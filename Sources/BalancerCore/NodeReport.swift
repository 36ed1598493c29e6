import Foundation

/// What a node's status probe said about it: `{"id":"ums1","mode":"update","version":"12.07.100"}`.
public struct NodeReport: Sendable, Hashable {
    /// The reported mode; a missing or unrecognised mode is `unknown`.
    public var mode: NodeMode
    public var version: String?
    public var id: String?

    public init(mode: NodeMode, version: String? = nil, id: String? = nil) {
        self.mode = mode
        self.version = version
        self.id = id
    }

    /// Why a status answer could not be read at all (which counts as a failed probe).
    public enum ParseError: Error, Hashable, CustomStringConvertible {
        case notJSON
        case notAnObject
        case tooLarge(Int)

        public var description: String {
            switch self {
            case .notJSON: "status answer is not JSON"
            case .notAnObject: "status answer is not a JSON object"
            case .tooLarge(let size): "status answer is too large (\(size) bytes)"
            }
        }
    }

    /// Largest status answer accepted; a real one is under 1 KiB.
    public static let maximumSize = 64 * 1024

    /// Reads a status answer. Unknown fields are ignored; `reconnecting` and the other modes map
    /// to `NodeMode`, anything else to `unknown`.
    public static func parse(_ bytes: some Collection<UInt8>) throws(ParseError) -> NodeReport {
        guard bytes.count <= maximumSize else { throw .tooLarge(bytes.count) }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(bytes), options: [])
        } catch {
            throw .notJSON
        }
        guard let fields = object as? [String: Any] else { throw .notAnObject }
        let mode = (fields["mode"] as? String).flatMap(NodeMode.init(rawValue:)) ?? .unknown
        let version = (fields["version"] as? String).flatMap { Version($0) != nil ? $0 : nil }
        return NodeReport(mode: mode, version: version, id: fields["id"] as? String)
    }
}
