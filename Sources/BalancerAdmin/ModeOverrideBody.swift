import BalancerCore
import Foundation
import NIOCore

/// The body of `PUT /nodes/{id}/mode`: `{"mode": "normal"}` pins a mode, `{"mode": null}` clears it.
enum ModeOverrideBody {
    static func parse(_ body: ByteBuffer) throws(AdminError) -> NodeMode? {
        let usage =
            "the body must be {\"mode\": MODE} with MODE one of "
            + NodeMode.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ") + ", or {\"mode\": null} to clear"
        guard let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any],
            let value = object["mode"]
        else { throw .badRequest(usage) }
        if value is NSNull { return nil }
        guard let text = value as? String, let mode = NodeMode(rawValue: text) else {
            throw .badRequest("invalid mode '\(value)': \(usage)")
        }
        return mode
    }
}
