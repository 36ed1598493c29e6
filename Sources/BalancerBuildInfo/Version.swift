/// The release this source tree is (the commit is recorded at build time, in `buildCommit`).
public let balancerVersion = "0.9.0"

/// "0.9.0 (commit 1a2b3c4d5e6f)": what `ums-balancer --version` prints.
public var versionText: String { "\(balancerVersion) (commit \(buildCommit))" }
