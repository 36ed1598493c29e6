import BalancerCore
import Testing

@Suite struct ProxyHeaderTests {
    let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    func v2(command: UInt8 = 0x21, family: UInt8 = 0x11, body: [UInt8]) -> [UInt8] {
        signature + [command, family, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
    }

    @Test func readsAVersionOneHeaderAndWhereTheClientsBytesBegin() {
        let bytes = Array("PROXY TCP4 192.0.2.7 10.0.0.5 51234 30001\r\nGET /".utf8)
        #expect(
            ProxyHeader.parse(bytes)
                == .complete(
                    ProxyHeader(
                        source: .init(ip: [192, 0, 2, 7], port: 51234),
                        destination: .init(ip: [10, 0, 0, 5], port: 30001)),
                    length: bytes.count - 5))
    }

    @Test func readsAVersionOneIPv6Header() throws {
        guard case .complete(let header, _) = ProxyHeader.parse(Array("PROXY TCP6 2001:db8::7 ::1 4000 8443\r\n".utf8))
        else {
            Issue.record("not parsed")
            return
        }
        #expect(header.source?.ipText == "2001:db8::7")
        #expect(header.destination?.description == "[::1]:8443")
    }

    @Test func readsAVersionTwoHeaderSkippingItsTLVs() {
        let body: [UInt8] = [192, 0, 2, 7, 10, 0, 0, 5, 0xC8, 0x22, 0x75, 0x31] + [0x01, 0x00, 0x02, 0x68, 0x32]
        let bytes = v2(body: body) + [0x16, 0x03]
        #expect(
            ProxyHeader.parse(bytes)
                == .complete(
                    ProxyHeader(
                        source: .init(ip: [192, 0, 2, 7], port: 51234),
                        destination: .init(ip: [10, 0, 0, 5], port: 30001)),
                    length: 16 + body.count))
    }

    @Test func aLocalHeaderCarriesNoClient() {
        #expect(
            ProxyHeader.parse(v2(command: 0x20, family: 0x00, body: []))
                == .complete(ProxyHeader(source: nil, destination: nil), length: 16))
        #expect(
            ProxyHeader.parse(Array("PROXY UNKNOWN\r\n".utf8))
                == .complete(ProxyHeader(source: nil, destination: nil), length: 15))
    }

    @Test func everyPrefixOfAHeaderAsksForMore() {
        let headers = [
            Array("PROXY TCP4 192.0.2.7 10.0.0.5 51234 30001\r\n".utf8),
            v2(body: [192, 0, 2, 7, 10, 0, 0, 5, 0xC8, 0x22, 0x75, 0x31]),
        ]
        for header in headers {
            for length in 0..<header.count {
                #expect(ProxyHeader.parse(header.prefix(length)) == .needMoreData, "\(length)")
            }
        }
    }

    @Test(arguments: [
        ("GET / HTTP/1.1\r\n", ProxyHeader.Problem.missing),
        ("\u{16}\u{3}\u{1}", .missing),
        ("PROXY TCP4 192.0.2.7 10.0.0.5 51234\r\n", .malformed("v1 TCP4 needs four fields")),
        ("PROXY TCP4 2001:db8::1 10.0.0.5 1 2\r\n", .malformed("v1 address is not an IPv4 address")),
        ("PROXY TCP4 192.0.2.7 10.0.0.5 65536 1\r\n", .malformed("v1 port is not a number from 0 to 65535")),
        ("PROXY UDP4 192.0.2.7 10.0.0.5 1 2\r\n", .malformed("v1 protocol 'UDP4' is not TCP4, TCP6 or UNKNOWN")),
        ("PROXY TCP4 192.0.2.7 10.0.0.5 1 2\n", .malformed("v1 line does not end in CRLF")),
    ])
    func brokenOrMissingHeadersAreRefusedWithTheReason(text: String, problem: ProxyHeader.Problem) {
        #expect(ProxyHeader.parse(Array(text.utf8)) == .invalid(problem))
    }

    @Test func aVersionOneLineWithoutEndIsRefusedOnceItIsTooLong() {
        #expect(
            ProxyHeader.parse(Array(("PROXY TCP4 " + String(repeating: "1", count: 120)).utf8))
                == .invalid(.malformed("v1 line longer than 107 bytes")))
    }

    @Test func brokenVersionTwoHeadersAreRefused() {
        #expect(ProxyHeader.parse(v2(command: 0x31, body: [])) == .invalid(.malformed("v2 version 3")))
        #expect(ProxyHeader.parse(v2(body: [1, 2, 3])) == .invalid(.malformed("v2 IPv4 addresses truncated")))
        #expect(
            ProxyHeader.parse(v2(family: 0x12, body: Array(repeating: 0, count: 12)))
                == .invalid(.malformed("v2 family 18 is not TCP over IPv4 or IPv6")))
    }

    @Test func whatIsWrittenIsReadBackTheSame() {
        let header = ProxyHeader(
            source: .init(ip: [192, 0, 2, 7], port: 51234), destination: .init(ip: [10, 0, 0, 5], port: 30001))
        for version in [1, 2] {
            let bytes = header.encoded(version: version)
            #expect(ProxyHeader.parse(bytes) == .complete(header, length: bytes.count))
        }
        #expect(
            String(decoding: header.encoded(version: 1), as: UTF8.self)
                == "PROXY TCP4 192.0.2.7 10.0.0.5 51234 30001\r\n")
    }

    @Test func randomBytesNeverTrap() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            var bytes = (0..<Int.random(in: 0...64, using: &generator)).map { _ in
                UInt8.random(in: 0...255, using: &generator)
            }
            if Bool.random(using: &generator) { bytes = signature + bytes }
            _ = ProxyHeader.parse(bytes)
        }
    }
}

@Suite struct AddressRangeTests {
    @Test func rangesMatchTheirAddressesOnly() throws {
        let range = try #require(AddressRange("10.1.0.0/16"))
        #expect(range.contains([10, 1, 200, 3]))
        #expect(!range.contains([10, 2, 0, 1]))
        #expect(try #require(AddressRange("127.0.0.1")).contains([127, 0, 0, 1]))
        #expect(!(try #require(AddressRange("127.0.0.1")).contains([127, 0, 0, 2])))
        let mapped: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 10, 1, 0, 9]
        #expect(range.contains(mapped), "an IPv4-mapped address counts as its IPv4 address")
        #expect(try #require(AddressRange("2001:db8::/32")).contains(IPAddressText.parse("2001:db8:1::5")!))
        #expect(try #require(AddressRange("0.0.0.0/0")).contains([8, 8, 8, 8]))
    }

    @Test(arguments: ["10.1.0.0/33", "10.1.0/16", "host/8", "::/129", "10.0.0.0/-1", "010.0.0.1"])
    func notARange(_ text: String) {
        #expect(AddressRange(text) == nil)
    }

    @Test func ipv6TextRoundTrips() {
        for text in ["2001:db8::1", "::1", "::", "fe80::1:2", "2001:db8:0:1:1:1:1:1"] {
            #expect(IPAddressText.format(IPAddressText.parse(text)!) == text, "\(text)")
        }
        #expect(IPAddressText.parse("::ffff:10.0.0.1") == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 10, 0, 0, 1])
        #expect(IPAddressText.parse("1:2:3:4:5:6:7:8:9") == nil)
    }
}
