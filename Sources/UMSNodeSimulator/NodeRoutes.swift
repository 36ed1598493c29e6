import Foundation
import GRDB
import NIOHTTP1

/// The device, console and control endpoints of a node.
extension SimulatedNode {
    func answerDevice(_ request: SimHTTPRequest) async -> SimHTTPResponse {
        let path = request.pathSegments
        guard path.count == 3, path[0] == "device", path[2] == "profile" else { return notFound(request) }
        guard request.method == .GET else { return methodNotAllowed(request) }
        return await profileAnswer(macText: path[1], clientCertificate: nil)
    }

    func answerConsole(_ request: SimHTTPRequest) async -> SimHTTPResponse {
        let path = request.pathSegments
        if path.count == 4, path[0] == "device-connector", path[1] == "device", path[3] == "profile" {
            guard request.method == .GET else { return methodNotAllowed(request) }
            let certificate = request.headers.first(name: "X-SSL-CERT").flatMap(clientCertificateSubject(fromHeader:))
            // What a real server takes as the device's address behind an offloading proxy.
            let forwardedFor = request.headers["X-Forwarded-For"]
            return await profileAnswer(
                macText: path[2], clientCertificate: .some(certificate),
                forwardedFor: .some(forwardedFor.isEmpty ? nil : forwardedFor.joined(separator: ", ")))
        }
        if request.path == WebSocketEndpoint.deviceConnectPath {
            // Reached only by a request that is not a valid WebSocket upgrade (RFC 6455, version 13).
            return .error(.upgradeRequired, "\(request.path) takes a WebSocket upgrade (RFC 6455, version 13)")
        }
        if path == ["console", "login"] {
            guard request.method == .POST else { return methodNotAllowed(request) }
            return consoleLogin()
        }
        return notFound(request)
    }

    func answerControl(_ request: SimHTTPRequest) async -> SimHTTPResponse {
        switch (request.method, request.pathSegments) {
        case (.GET, ["status"]):
            var answer = SimHTTPResponse.json(.ok, statusObject(status))
            answer.date = Date().addingTimeInterval(configuration.clockOffsetSeconds)
            return answer
        case (.POST, ["control", "install"]):
            runtime.withLock { $0.installRequests += 1 }
            guard let text = request.query["version"], let target = NodeVersion(text) else {
                return .error(.badRequest, "install needs ?version= with dot-separated integers, e.g. 12.07.100")
            }
            var seconds = configuration.defaultInstallSeconds
            if let text = request.query["seconds"] {
                guard let value = Double(text), value.isFinite, value >= 0, value <= 3600 else {
                    return .error(.badRequest, "seconds must be a number from 0 to 3600")
                }
                seconds = value
            }
            switch await install(target, seconds: seconds) {
            case .success(let status):
                var object = statusObject(status)
                object["target_version"] = target.text
                object["install_seconds"] = seconds
                return .json(.accepted, object)
            case .failure(let refusal):
                return refused(refusal)
            }
        case (.POST, ["control", "reconnect"]):
            switch await reconnect() {
            case .success(.started): return .json(.accepted, statusObject(status))
            case .success(.alreadyDone): return .json(.ok, statusObject(status))
            case .failure(let refusal): return refused(refusal)
            }
        case (_, ["status"]), (_, ["control", "install"]), (_, ["control", "reconnect"]):
            return methodNotAllowed(request)
        default:
            return notFound(request)
        }
    }

    // `clientCertificate` and `forwardedFor` are nil for the device port, `.some(nil)` for the
    // console port without that header.
    private func profileAnswer(
        macText: String, clientCertificate: String??, forwardedFor: String?? = nil
    ) async -> SimHTTPResponse {
        guard let mac = ProfileStore.normalizedMAC(macText) else {
            return .error(.badRequest, "not a MAC address: \(macText)")
        }
        let (status, writer) = runtime.withLock { runtime -> (NodeStatus, (any DatabaseWriter)?) in
            let writer: (any DatabaseWriter)? =
                runtime.machine.database == .localCopy ? runtime.local : runtime.productive?.pool
            return (Self.status(id: configuration.id, runtime.machine), writer)
        }
        guard let writer else { return .error(.serviceUnavailable, "the database is not open") }
        let profileText: String
        do {
            profileText = try await ProfileStore.profile(mac: mac, in: writer)
        } catch {
            logger.error("profile lookup failed", metadata: ["mac": "\(mac)", "error": "\(error)"])
            return .error(.internalServerError, "profile lookup failed")
        }
        let profile = (try? JSONSerialization.jsonObject(with: Data(profileText.utf8))) ?? profileText
        var object: [String: Any] = [
            "node": status.id, "mode": status.mode.rawValue, "database": status.database.rawValue, "profile": profile,
        ]
        if case .some(let certificate) = clientCertificate {
            object["client_cert"] = certificate ?? NSNull()
        }
        if case .some(let address) = forwardedFor {
            object["forwarded_for"] = address ?? NSNull()
        }
        return .json(.ok, object)
    }

    private func consoleLogin() -> SimHTTPResponse {
        let inUpdateMode = runtime.withLock { $0.machine.recordConsoleLogin() }
        var object: [String: Any] = ["node": configuration.id, "session": Self.randomSession()]
        if inUpdateMode {
            logger.warning("console login accepted in update mode")
            object["warning"] =
                "This server runs in update mode on a local copy of the database: changes made now will be lost "
                + "when the server returns to the productive database."
        }
        return .json(.ok, object)
    }

    private func statusObject(_ status: NodeStatus) -> [String: Any] {
        [
            "id": status.id, "mode": status.mode.rawValue, "version": status.version.text,
            "database": status.database.rawValue, "console_logins_in_update_mode": status.consoleLoginsInUpdateMode,
            "websockets_open": webSocketsOpen,
            "install_requests": runtime.withLock { $0.installRequests },
            "connections_accepted": [
                "device": deviceServer.connectionsAccepted, "console": consoleServer.connectionsAccepted,
            ],
        ]
    }

    private func refused(_ refusal: NodeStateMachine.Refusal) -> SimHTTPResponse {
        var object = statusObject(status)
        object["error"] = refusal.reason
        return .json(.conflict, object)
    }

    private func notFound(_ request: SimHTTPRequest) -> SimHTTPResponse {
        .error(.notFound, "no such path: \(request.path)")
    }

    private func methodNotAllowed(_ request: SimHTTPRequest) -> SimHTTPResponse {
        .error(.methodNotAllowed, "\(request.method.rawValue) is not allowed on \(request.path)")
    }

    private static func randomSession() -> String {
        (0..<4).map { _ in String(format: "%08x", UInt32.random(in: .min ... .max)) }.joined()
    }
}
