// swift-tools-version:6.0
import PackageDescription

/// libFuzzer targets for the balancer's parsers and its core machines: a package of its own,
/// built only by `scripts/fuzz.sh` with `-sanitize=fuzzer,address`, so the main build and CI's
/// tests stay light.
/// Each executable's main hands its test function to libFuzzer's driver (see CLibFuzzer).
let fuzzTargets: [(name: String, modules: [String])] = [
    ("client-hello", ["BalancerCore"]),
    ("request-policy", ["BalancerCore"]),
    ("proxy-header", ["BalancerCore"]),
    ("node-report", ["BalancerCore"]),
    ("duration-text", ["BalancerCore"]),
    ("config-file", ["BalancerCore", "BalancerConfigFile"]),
    ("connection-machine", ["BalancerCore"]),
    ("update-run", ["BalancerCore"]),
    ("update-drive", ["BalancerCore"]),
]

let package = Package(
    name: "ums-balancer-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "ums-balancer", path: "../")],
    targets: [
        .target(name: "CLibFuzzer"),
        .target(
            name: "FuzzSupport",
            dependencies: ["CLibFuzzer", .product(name: "BalancerCore", package: "ums-balancer")]),
    ]
        + fuzzTargets.map { target in
            .executableTarget(
                name: target.name,
                dependencies: ["FuzzSupport"]
                    + target.modules.map { .product(name: $0, package: "ums-balancer") }
            )
        },
    swiftLanguageModes: [.v6]
)
