import BalancerAdmin
import BalancerCore
import BalancerTesting
import Testing

@Suite struct AdminTokenTests {
    @Test func surroundingWhitespaceOfTheTokenFileIsIgnored() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let token = try AdminToken.read(from: try directory.write("admin.token", "\n  s3cret-token \t\n"))
        #expect(token.matches("s3cret-token"))
        #expect(!token.matches(" s3cret-token"))
    }

    @Test(arguments: ["", "s3cret", "s3cret-tokem", "s3cret-token!", "S3CRET-TOKEN", "x"])
    func onlyTheExactTokenMatches(_ candidate: String) throws {
        let token = try #require(AdminToken("s3cret-token"))
        #expect(!token.matches(candidate))
    }

    @Test func anEmptyTokenFileIsAnError() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write("admin.token", " \n")
        #expect(throws: AdminSetupError.self) { try AdminToken.read(from: path) }
        #expect(AdminToken("   ") == nil)
    }

    @Test func aMissingTokenFileIsAnError() {
        let settings = AdminSettings(
            bind: Endpoint(host: "127.0.0.1", port: 9900), tokenFile: "/nonexistent/admin.token")
        #expect(throws: AdminSetupError.self) { try AdminToken.load(for: settings) }
    }

    @Test(arguments: [
        ("127.0.0.1", true), ("127.10.0.1", true), ("::1", true), ("0.0.0.0", false), ("10.0.0.11", false),
        ("::", false), ("128.0.0.1", false), ("127.0.0", false),
    ])
    func loopbackAddressesAreRecognised(_ host: String, _ loopback: Bool) {
        #expect(AdminToken.isLoopback(host) == loopback)
    }

    @Test func aNonLoopbackBindWithoutATokenIsRefused() throws {
        let public_ = AdminSettings(bind: Endpoint(host: "0.0.0.0", port: 9900))
        #expect(throws: AdminSetupError.self) { try AdminToken.load(for: public_) }
        let loopback = AdminSettings(bind: Endpoint(host: "127.0.0.1", port: 9900))
        #expect(try AdminToken.load(for: loopback) == nil)
    }
}
