import Hummingbird

/// `GET /healthz`: whether this balancer serves, for keepalived, systemd and front balancers.
/// It needs no token and holds no data (like HAProxy's `monitor-uri`): the status code is the answer.
enum HealthCheck {
    static let path = "/healthz"

    /// 200 `ok` while the listeners are open and serving, 503 while starting or shutting down.
    static func response(serving: Bool) -> Response {
        Response(
            status: serving ? .ok : .serviceUnavailable,
            headers: [.contentType: "text/plain; charset=utf-8", .cacheControl: "no-store"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: serving ? "ok\n" : "unavailable\n")))
    }
}
