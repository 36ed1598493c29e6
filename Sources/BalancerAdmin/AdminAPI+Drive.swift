import BalancerCore
import BalancerNIO
import Foundation
import Hummingbird

/// `POST /update/start|pause|resume|abort`: the driven update. Each answers the drive document,
/// or 409 with the reason it does not apply now (400 for a malformed body).
extension AdminAPI {
    /// The operator requests on a drive under way.
    enum DriveRequest {
        case pause, resume, abort
    }

    func startUpdate(_ request: Request, actor: String) async throws -> Response {
        let body = try await request.body.collect(upTo: 4096)
        let start = try StartUpdateBody.parse(body)
        let drive: UpdateDrive
        do {
            drive = try await balancer.startUpdate(version: start.version, force: start.force, actor: actor)
        } catch {
            if case .invalidVersion = error { throw AdminError.badRequest(error.description) }
            throw AdminError.conflict(error.description)
        }
        return try AdminJSON.response(document(drive))
    }

    func driveRequest(_ kind: DriveRequest, actor: String) async throws -> Response {
        let drive: UpdateDrive
        do {
            switch kind {
            case .pause: drive = try await balancer.pauseUpdate(actor: actor)
            case .resume: drive = try await balancer.resumeUpdate(actor: actor)
            case .abort: drive = try await balancer.abortUpdate(actor: actor)
            }
        } catch {
            throw AdminError.conflict(error.description)
        }
        return try AdminJSON.response(document(drive))
    }

    private func document(_ drive: UpdateDrive) -> DriveDocument {
        DriveDocument(
            of: drive, canaryConnections: balancer.configuration.update.canaryConnections, now: Date())
    }
}

/// The body of `POST /update/start`: `{"version": "12.07.100"}`, optionally `"force": true` to start
/// although the update plan is not ready.
enum StartUpdateBody {
    static func parse(_ body: ByteBuffer) throws(AdminError) -> (version: String, force: Bool) {
        let usage = "the body must be {\"version\": \"12.07.100\"}, optionally with \"force\": true"
        guard let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any],
            let version = object["version"] as? String
        else { throw .badRequest(usage) }
        let force = object["force"] ?? false
        guard let force = force as? Bool else { throw .badRequest("force must be true or false: \(usage)") }
        return (version, force)
    }
}
