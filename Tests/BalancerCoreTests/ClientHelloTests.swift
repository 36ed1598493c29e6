import BalancerCore
import Testing

/// Builds TLS ClientHello records the way clients send them.
enum ClientHelloBuilder {
    static func hello(serverName: String?, extraExtensionBytes: Int = 0) -> [UInt8] {
        var extensions: [UInt8] = []
        if let serverName {
            let name = Array(serverName.utf8)
            let entry: [UInt8] = [0x00] + u16(name.count) + name
            let list = u16(entry.count) + entry
            extensions += [0x00, 0x00] + u16(list.count) + list
        }
        if extraExtensionBytes > 0 {
            // The padding extension (21), to make a hello as large as a test needs.
            extensions += [0x00, 0x15] + u16(extraExtensionBytes) + Array(repeating: 0, count: extraExtensionBytes)
        }
        var body: [UInt8] = [0x03, 0x03] + Array(repeating: 7, count: 32)
        body += [0x00]  // no session id
        body += u16(2) + [0x13, 0x01]  // one cipher suite
        body += [0x01, 0x00]  // null compression
        body += u16(extensions.count) + extensions
        let handshake: [UInt8] = [0x01] + u24(body.count) + body
        return records(handshake)
    }

    static func records(_ handshake: [UInt8], recordSize: Int = 16_384) -> [UInt8] {
        var bytes: [UInt8] = []
        var offset = 0
        while offset < handshake.count {
            let chunk = Array(handshake[offset..<min(offset + recordSize, handshake.count)])
            bytes += [0x16, 0x03, 0x01] + u16(chunk.count) + chunk
            offset += chunk.count
        }
        return bytes
    }

    static func u16(_ value: Int) -> [UInt8] { [UInt8(value >> 8 & 0xff), UInt8(value & 0xff)] }
    static func u24(_ value: Int) -> [UInt8] { [UInt8(value >> 16 & 0xff)] + u16(value) }
}

@Suite struct ClientHelloTests {
    @Test func readsTheServerName() {
        #expect(
            ClientHello.parse(ClientHelloBuilder.hello(serverName: "UMS-Console.Example.com"))
                == .complete(serverName: "ums-console.example.com"))
    }

    @Test func aHelloWithoutServerNameIsCompleteWithoutOne() {
        #expect(ClientHello.parse(ClientHelloBuilder.hello(serverName: nil)) == .complete(serverName: nil))
    }

    @Test func everyPrefixOfAHelloAsksForMoreData() {
        let hello = ClientHelloBuilder.hello(serverName: "ums.example.com")
        for length in 0..<hello.count {
            #expect(ClientHello.parse(hello[0..<length]) == .needMoreData)
        }
    }

    @Test func aHelloSplitOverSeveralRecordsIsReassembled() {
        let single = ClientHelloBuilder.hello(serverName: "device.example.com")
        let handshake = Array(single.dropFirst(5))
        #expect(
            ClientHello.parse(ClientHelloBuilder.records(handshake, recordSize: 10))
                == .complete(serverName: "device.example.com"))
    }

    @Test func plainHTTPIsNotAHello() {
        #expect(ClientHello.parse(Array("GET / HTTP/1.1\r\n\r\n".utf8)) == .invalid(.notTLS))
    }

    @Test func anOversizedHelloIsRejectedBeforeItIsComplete() {
        let hello = ClientHelloBuilder.hello(serverName: "a.example.com", extraExtensionBytes: 20_000)
        #expect(ClientHello.parse(hello.prefix(17_000)) == .invalid(.oversized))
    }

    @Test func aServerNameWithControlCharactersIsRejected() {
        #expect(
            ClientHello.parse(ClientHelloBuilder.hello(serverName: "evil\u{0}.com"))
                == .invalid(.malformed("server name is not a host name")))
    }

    @Test func oneTrailingDotIsDropped() {
        #expect(
            ClientHello.parse(ClientHelloBuilder.hello(serverName: "igel-devices.example.com."))
                == .complete(serverName: "igel-devices.example.com"))
    }

    /// Found by fuzzing: "c555..." came out as "c555.." (one dot trimmed), a name no SNI rule matches.
    @Test(arguments: ["c555...", "ums.example.com..", ".ums.example.com", "ums..example.com", "."])
    func aServerNameWithAnEmptyLabelIsRejected(name: String) {
        #expect(
            ClientHello.parse(ClientHelloBuilder.hello(serverName: name))
                == .invalid(.malformed("server name is not a host name")))
    }

    @Test func truncatedInnerLengthsAreMalformedNotCrashes() {
        var hello = ClientHelloBuilder.hello(serverName: "ums.example.com")
        hello[5 + 4 + 34] = 0xff  // session id length beyond the message
        #expect(ClientHello.parse(hello) == .invalid(.malformed("malformed ClientHello")))
    }

    @Test func randomBytesNeverTrap() {
        var generator = SystemRandomNumberGenerator()
        let valid = ClientHelloBuilder.hello(serverName: "ums.example.com")
        for _ in 0..<3_000 {
            var bytes = valid
            for _ in 0..<Int.random(in: 1...8, using: &generator) {
                bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            }
            _ = ClientHello.parse(bytes.prefix(Int.random(in: 0...bytes.count, using: &generator)))
            _ = ClientHello.parse(
                (0..<Int.random(in: 0...64, using: &generator)).map { _ in UInt8.random(in: 0...255) })
        }
    }
}

@Suite struct SNIRulesTests {
    let rules = SNIRules(
        patterns: [.console: ["ums-console.example.com", "*.admin.example.com"], .device: ["*.example.com"]],
        defaultClass: .device)

    @Test(arguments: [
        ("ums-console.example.com", TrafficClass.console),
        ("UMS-CONSOLE.example.com", .console),
        ("webapp.admin.example.com", .console),
        ("a.b.admin.example.com", .device),
        ("admin.example.com", .device),
        ("igel-device.example.com", .device),
        ("other.org", .device),
    ])
    func classifiesByExactNameThenWildcard(name: String, expected: TrafficClass) {
        #expect(rules.classify(name) == expected)
    }

    @Test func noServerNameTakesTheDefault() {
        #expect(SNIRules(patterns: [:], defaultClass: .console).classify(nil) == .console)
    }
}
