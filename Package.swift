// swift-tools-version:6.0
import PackageDescription

/// The data path's modules in release builds: the relay and its shared state are single-threaded
/// per loop by construction (each connection lives on one loop), so the run-time exclusivity
/// checks on every class property access cost CPU on every event and catch nothing; the core's
/// generic connection machine is specialized where it is driven.
let hotPath: [SwiftSetting] = [
    .unsafeFlags(["-enforce-exclusivity=unchecked", "-cross-module-optimization"], .when(configuration: .release))
]

let package = Package(
    name: "ums-balancer",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ums-balancer", targets: ["ums-balancer"]),
        // The parsers, for the fuzz targets in Fuzz/ (a package of its own, so CI's build stays light).
        .library(name: "BalancerCore", targets: ["BalancerCore"]),
        .library(name: "BalancerConfigFile", targets: ["BalancerConfigFile"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // Pure domain: no NIO, no I/O.
        // The connection machine's generic code is specialized in the executors that drive it
        // (cross-module optimization), not instantiated at run time on every event.
        .target(name: "BalancerCore", swiftSettings: hotPath),
        // epoll and eventfd for the relay (Linux only; empty elsewhere).
        .target(name: "CBalancerLinux"),
        .target(
            name: "BalancerConfigFile",
            dependencies: [
                "BalancerCore", .product(name: "Yams", package: "Yams"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        // What both data-path executors share: node directory, listener context, access log, registry.
        .target(
            name: "BalancerDataPath",
            dependencies: [
                "BalancerCore", "BalancerStore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: hotPath
        ),
        // The epoll executor of the connection machine (Linux only; empty elsewhere).
        .target(
            name: "BalancerRelay",
            dependencies: [
                "BalancerCore", "BalancerDataPath", "CBalancerLinux",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: hotPath
        ),
        .target(
            name: "BalancerNIO",
            dependencies: [
                "BalancerCore", "BalancerStore", "BalancerDataPath", "BalancerRelay",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Subprocess", package: "swift-subprocess"),
            ],
            // The by-path HTTP proxy's handlers are the data path too.
            swiftSettings: hotPath
        ),
        .target(
            name: "BalancerStore",
            dependencies: [
                "BalancerCore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "BalancerAdmin",
            dependencies: [
                "BalancerCore", "BalancerNIO", "BalancerStore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The composition root: the running balancer as one ServiceGroup, for the daemon, the demo and tests.
        .target(
            name: "BalancerApp",
            dependencies: [
                "BalancerCore", "BalancerConfigFile", "BalancerNIO", "BalancerStore", "BalancerAdmin",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "BalancerCLI",
            dependencies: [
                "BalancerCore", "BalancerConfigFile", "BalancerNIO", "BalancerStore", "BalancerAdmin", "UMSNodeSimulator",
                "BalancerDataPath", "BalancerBuildInfo", "BalancerApp",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(name: "ums-balancer", dependencies: ["BalancerCLI"]),
        // The version and the git commit of the build, for `--version`.
        .target(name: "BalancerBuildInfo", plugins: ["BuildInfo"]),
        .plugin(name: "BuildInfo", capability: .buildTool()),
        .target(
            name: "BalancerTesting",
            dependencies: [
                "BalancerCore", "BalancerNIO", "BalancerStore", "UMSNodeSimulator", "BalancerApp",
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The simulated UMS Server: shares no code with the balancer's modules.
        .target(
            name: "UMSNodeSimulator",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "ums-node-sim",
            dependencies: [
                "UMSNodeSimulator",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "UMSNodeSimulatorTests",
            dependencies: [
                "UMSNodeSimulator", "BalancerTesting",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "BalancerCoreTests", dependencies: ["BalancerCore"]),
        .testTarget(name: "BalancerCLITests", dependencies: ["BalancerCLI"]),
        .testTarget(name: "BalancerStoreTests", dependencies: ["BalancerStore", "BalancerCore", "BalancerTesting"]),
        .testTarget(name: "BalancerConfigFileTests", dependencies: ["BalancerConfigFile", "BalancerCore"]),
        .testTarget(
            name: "BalancerNIOTests",
            dependencies: [
                "BalancerNIO", "BalancerCore", "BalancerTesting", "BalancerDataPath", "BalancerRelay", "BalancerAdmin",
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .testTarget(
            name: "BalancerAdminTests",
            dependencies: [
                "BalancerAdmin", "BalancerCore", "BalancerNIO", "BalancerStore", "BalancerTesting", "BalancerApp",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "BalancerTesting", "BalancerStore", "BalancerCore", "BalancerDataPath",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
