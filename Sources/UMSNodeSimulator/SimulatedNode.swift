import Foundation
import GRDB
import Logging
import NIOCore
import NIOPosix

/// A simulated IGEL UMS Server: device, console and control ports over a cluster's shared SQLite database.
public final class SimulatedNode: Sendable {
    /// How a node is set up.
    public struct Configuration: Sendable {
        /// The node's id, e.g. `ums1`.
        public var id: String
        /// The address all three ports bind to.
        public var host: String
        /// The device port (0 picks a free one).
        public var devicePort: Int
        /// The console port, playing a real server's 8443 (0 picks a free one).
        public var consolePort: Int
        /// The control (watchdog) port (0 picks a free one).
        public var controlPort: Int
        /// Where `productive.sqlite` and `local-ID.sqlite` live.
        public var dataDirectory: URL
        /// The version the node starts on.
        public var version: NodeVersion
        /// How long the node stays `reconnecting`.
        public var reconnectSeconds: Double
        /// How long the node keeps serving in update mode after accepting a reconnect, as a server
        /// shutting down does (0: it goes down at once). A second request meanwhile answers 200.
        public var reconnectDelaySeconds: Double = 0
        /// How long an install takes when the request names no `seconds`.
        public var defaultInstallSeconds: Double
        /// How long going down waits for requests in flight before closing their connections.
        public var drainTimeoutSeconds: Double
        /// A PEM certificate file: when set with `tlsKey`, the device and console ports speak TLS.
        public var tlsCertificate: String? = nil
        /// The PEM private key of `tlsCertificate`.
        public var tlsKey: String? = nil
        /// How far the node's clock is off, as its status answers' `Date` header shows (UMS needs
        /// every server within a minute; the balancer's update plan checks it).
        public var clockOffsetSeconds: Double = 0

        /// Creates a configuration; ports of 0 pick free ports.
        public init(
            id: String, host: String = "127.0.0.1", devicePort: Int = 0, consolePort: Int = 0, controlPort: Int = 0,
            dataDirectory: URL, version: NodeVersion = NodeVersion("12.06.100")!, reconnectSeconds: Double = 1,
            defaultInstallSeconds: Double = 3, drainTimeoutSeconds: Double = 10
        ) {
            self.id = id
            self.host = host
            self.devicePort = devicePort
            self.consolePort = consolePort
            self.controlPort = controlPort
            self.dataDirectory = dataDirectory
            self.version = version
            self.reconnectSeconds = reconnectSeconds
            self.defaultInstallSeconds = defaultInstallSeconds
            self.drainTimeoutSeconds = drainTimeoutSeconds
        }
    }

    /// The ports a node listens on (the bound ones once started).
    public struct Ports: Sendable, Hashable {
        /// The device port.
        public var device: Int
        /// The console port.
        public var console: Int
        /// The control port.
        public var control: Int
    }

    /// Why `start()` failed before any port was opened.
    public struct StartError: Error, CustomStringConvertible {
        /// What went wrong.
        public var description: String
    }

    struct Runtime {
        var machine: NodeStateMachine
        var productive: ProductiveDatabase?
        var local: DatabaseQueue?
        var transition: Task<Void, Never>?
        /// What the node reports while a finished transition waits for its ports to reopen: a
        /// starting UMS Server answers with its new mode only once it serves devices again.
        var shownWhileStarting: NodeStatus?
        var started = false
        var stopped = false
        /// `POST /control/install` requests received, answered or refused (`install_requests`).
        var installRequests = 0
    }

    // Lets the servers reach the node without a reference cycle.
    private final class WeakNode: Sendable {
        private struct Box { weak var node: SimulatedNode? }
        private let box = Locked(Box())
        var node: SimulatedNode? {
            get { box.withLock { $0.node } }
            set { box.withLock { $0.node = newValue } }
        }
    }

    /// The configuration the node was created with.
    public let configuration: Configuration
    let logger: Logger
    let runtime: Locked<Runtime>
    let deviceServer: HTTPServer
    let consoleServer: HTTPServer
    let controlServer: HTTPServer
    let webSockets = WebSocketCounter()

    /// Creates a node; nothing listens until `start()`.
    public init(
        configuration: Configuration, logger: Logger = Logger(label: "ums-node-sim"),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        var logger = logger
        logger[metadataKey: "node"] = "\(configuration.id)"
        self.configuration = configuration
        self.logger = logger
        self.runtime = Locked(Runtime(machine: NodeStateMachine(version: configuration.version)))
        let weak = WeakNode()
        var tls: HTTPServer.TLSFiles?
        if let certificate = configuration.tlsCertificate, let key = configuration.tlsKey {
            tls = HTTPServer.TLSFiles(certificate: certificate, key: key)
        }
        func server(
            _ name: String, _ port: Int, tls: HTTPServer.TLSFiles? = nil, webSocket: WebSocketEndpoint? = nil,
            _ route: @escaping @Sendable (SimulatedNode, SimHTTPRequest) async -> SimHTTPResponse
        ) -> HTTPServer {
            HTTPServer(
                name: name, host: configuration.host, port: port, group: eventLoopGroup, logger: logger, tls: tls,
                webSocket: webSocket
            ) {
                request in
                guard let node = weak.node else { return .error(.serviceUnavailable, "the node is gone") }
                return await route(node, request)
            }
        }
        deviceServer = server("device", configuration.devicePort, tls: tls) { await $0.answerDevice($1) }
        // Like a real server's 8443, the console port carries the devices' WebSockets too.
        let deviceConnect = WebSocketEndpoint(
            path: WebSocketEndpoint.deviceConnectPath, counter: webSockets,
            answerHeaders: { head in weak.node?.webSocketAnswerHeaders(head) ?? [:] })
        consoleServer = server("console", configuration.consolePort, tls: tls, webSocket: deviceConnect) {
            await $0.answerConsole($1)
        }
        controlServer = server("control", configuration.controlPort) { await $0.answerControl($1) }
        weak.node = self
    }

    /// The node's current status.
    public var status: NodeStatus {
        runtime.withLock { $0.shownWhileStarting ?? Self.status(id: configuration.id, $0.machine) }
    }

    /// The node's current mode.
    public var mode: NodeMode { status.mode }
    /// The version the node reports.
    public var version: NodeVersion { status.version }
    /// The database the node works on.
    public var database: DatabaseKind { status.database }
    /// Console logins accepted in update mode.
    public var consoleLoginsInUpdateMode: Int { status.consoleLoginsInUpdateMode }
    /// The devices' WebSockets open on the console port (`websockets_open`).
    public var webSocketsOpen: Int { webSockets.open }
    /// Connections accepted on the device and console ports since the node was made
    /// (`connections_accepted` in the status JSON).
    public var connectionsAccepted: (device: Int, console: Int) {
        (deviceServer.connectionsAccepted, consoleServer.connectionsAccepted)
    }
    /// `POST /control/install` requests received (`install_requests` in the status JSON).
    public var installRequests: Int { runtime.withLock { $0.installRequests } }

    /// The ports, as bound once the node has started.
    public var ports: Ports {
        Ports(device: deviceServer.port, console: consoleServer.port, control: controlServer.port)
    }

    /// Whether the device and console ports currently accept connections.
    public var servicePortsOpen: Bool { deviceServer.isOpen && consoleServer.isOpen }

    /// The path of this node's local copy of the database.
    public var localCopyPath: String { LocalCopy.path(id: configuration.id, in: configuration.dataDirectory) }

    /// The productive schema version, read from `productive.sqlite`.
    public func productiveSchemaVersion() async throws -> NodeVersion {
        guard let productive = runtime.withLock({ $0.productive }) else {
            throw StartError(description: "the node has not been started")
        }
        return try await productive.schemaVersion()
    }

    /// Opens the databases, registers the node in the cluster and opens its three ports.
    public func start() async throws {
        let alreadyStarted = runtime.withLock { runtime in
            defer { runtime.started = true }
            return runtime.started
        }
        guard !alreadyStarted else { throw StartError(description: "the node was already started") }
        do {
            try FileManager.default.createDirectory(at: configuration.dataDirectory, withIntermediateDirectories: true)
            let productive = try await ProductiveDatabase(
                directory: configuration.dataDirectory, initialSchema: configuration.version)
            let (machine, local) = try await initialState(productive)
            runtime.withLock { runtime in
                runtime.productive = productive
                runtime.machine = machine
                runtime.local = local
            }
            try await productive.register(currentRow())
            try await controlServer.open()
            try await deviceServer.open()
            try await consoleServer.open()
        } catch {
            await stop()
            throw error
        }
        let status = status
        logger.info(
            "node started",
            metadata: ["mode": "\(status.mode.rawValue)", "version": "\(status.version)", "ports": "\(ports)"])
    }

    /// Closes the ports gracefully, ends any install or reconnect, and closes the databases.
    public func stop() async {
        let (transition, productive) = runtime.withLock { runtime in
            runtime.stopped = true
            return (runtime.transition, runtime.productive)
        }
        transition?.cancel()
        let timeout = Duration.milliseconds(Int(configuration.drainTimeoutSeconds * 1000))
        async let device: Void = deviceServer.retire(drainTimeout: timeout)
        async let console: Void = consoleServer.retire(drainTimeout: timeout)
        async let control: Void = controlServer.retire(drainTimeout: timeout)
        _ = await (device, console, control)
        await transition?.value
        let local = runtime.withLock { runtime in
            defer { runtime.local = nil }
            return runtime.local
        }
        try? local?.close()
        try? productive?.pool.close()
        logger.info("node stopped")
    }

    static func status(id: String, _ machine: NodeStateMachine) -> NodeStatus {
        NodeStatus(
            id: id, mode: machine.mode, version: machine.version, database: machine.database,
            consoleLoginsInUpdateMode: machine.consoleLoginsInUpdateMode)
    }

    func currentRow() -> ClusterNodeRow {
        // The cluster registry follows the state machine, ports or not.
        let status = runtime.withLock { Self.status(id: configuration.id, $0.machine) }
        return ClusterNodeRow(
            id: status.id, version: status.version.text, mode: status.mode.rawValue, database: status.database.rawValue)
    }

    /// What a restarted node comes back as, like a real server's installation: the version it
    /// installed stays (the registry row knows it; a newer `version` argument is a new install),
    /// and so does its mode. A node that was in update mode, or on its way back from it, resumes
    /// update mode on its local copy (a fresh copy when that was lost) and needs its reconnect,
    /// even when the schema was renewed meanwhile; an updated normal node stays normal on its
    /// version. An install cut short leaves the node on the version it had.
    private func initialState(_ productive: ProductiveDatabase) async throws -> (NodeStateMachine, DatabaseQueue?) {
        let path = localCopyPath
        let updateModes: Set<String> = [NodeMode.update.rawValue, NodeMode.reconnecting.rawValue]
        guard let row = try await productive.node(id: configuration.id), let installed = NodeVersion(row.version),
            installed > configuration.version || (installed == configuration.version && updateModes.contains(row.mode))
        else {
            try LocalCopy.remove(at: path)
            return (NodeStateMachine(version: configuration.version), nil)
        }
        guard updateModes.contains(row.mode) else {
            try LocalCopy.remove(at: path)
            return (NodeStateMachine(version: installed), nil)
        }
        logger.info("resuming update mode on the local copy", metadata: ["version": "\(installed)"])
        let local =
            LocalCopy.exists(at: path)
            ? try LocalCopy.open(at: path)
            : try await LocalCopy.make(from: productive, id: configuration.id, in: configuration.dataDirectory)
        return (NodeStateMachine(resumingUpdateAt: installed), local)
    }
}
