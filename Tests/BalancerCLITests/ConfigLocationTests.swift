import Testing

@testable import BalancerCLI

/// Where the commands read the configuration without `--config`: on an installed host the file in
/// /etc, even when the working directory is a source checkout; else the checkout's.
@Suite struct ConfigLocationTests {
    @Test func theInstalledFileWinsOverTheCheckoutsWhenBothExist() {
        #expect(ConfigLocation.path(nil, exists: { _ in true }) == "/etc/ums-balancer/ums-balancer.yaml")
    }

    @Test func withoutTheInstalledFileTheCheckoutsIsRead() {
        #expect(
            ConfigLocation.path(nil, exists: { $0 == "config/ums-balancer.yaml" }) == "config/ums-balancer.yaml")
    }

    @Test func anExplicitFileIsTakenAsGivenEvenWhenItDoesNotExist() {
        // Its absence is then reported by the reader, naming that file.
        #expect(ConfigLocation.path("/srv/balancer.yaml", exists: { _ in false }) == "/srv/balancer.yaml")
    }

    @Test func withNeitherTheErrorNamesBothPlaces() {
        #expect(ConfigLocation.path(nil, exists: { _ in false }) == nil)
        let error = ConfigLocation.missing().description
        #expect(error.hasPrefix("config/ums-balancer.yaml:1:1: no such file"), "\(error)")
        #expect(error.contains("/etc/ums-balancer/ums-balancer.yaml"), "\(error)")
    }
}
