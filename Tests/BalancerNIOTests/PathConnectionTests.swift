import BalancerCore
import BalancerDataPath
import BalancerStore
import BalancerTesting
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOTLS
import Testing

@testable import BalancerNIO

@Suite struct PathConnectionTests {
    static let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    @Test func theNodeGetsTheHeadAsAReverseProxyForwardsIt() throws {
        let path = try EmbeddedPath()
        try path.clientSends(
            "GET /device-connector/x HTTP/1.1\r\nHost: ums\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
                + "X-SSL-CERT: forged\r\nX-Forwarded-For: 6.6.6.6\r\nTE: trailers\r\nAccept: */*\r\n\r\n")
        #expect(path.nodes.count == 1)
        let head = try path.written(to: path.node)
        #expect(head.hasPrefix("GET /device-connector/x HTTP/1.1\r\n"))
        for gone in ["X-Hop", "X-SSL-CERT", "6.6.6.6", "TE:", "Connection:"] {
            #expect(!head.contains(gone), "\(gone) in \(head)")
        }
        #expect(head.contains("Host: ums\r\n"))
        #expect(head.contains("Accept: */*\r\n"))
        #expect(head.contains("X-Forwarded-For: 127.0.0.1\r\n"))
        #expect(head.contains("X-Forwarded-Proto: https\r\n"))
        try path.nodeSends(Self.answer)
        #expect(try path.written(to: path.client) == Self.answer)
        #expect(path.client.isActive)
    }

    @Test func theNextRequestReusesThePooledNodeConnection() throws {
        let path = try EmbeddedPath(nodes: ["ums1"])
        try path.clientSends("GET /a HTTP/1.1\r\nHost: ums\r\n\r\n")
        try path.nodeSends(Self.answer)
        _ = try path.written(to: path.client)
        try path.clientSends("GET /b HTTP/1.1\r\nHost: ums\r\n\r\n")
        #expect(path.nodes.count == 1, "no second node connection")
        #expect(try path.written(to: path.node).contains("GET /b HTTP/1.1\r\n"))
        try path.nodeSends(Self.answer)
        #expect(try path.written(to: path.client) == Self.answer)
        #expect(path.requestLines.map { $0.metadata["path"] } == ["/a", "/b"])
        #expect(path.directory.connections(to: "ums1") == 0, "a pooled connection carries no request")
    }

    @Test func aPooledConnectionTheNodeClosedGetsAGETAgainOnAFreshOne() throws {
        let path = try EmbeddedPath(nodes: ["ums1"])
        try path.clientSends("GET /a HTTP/1.1\r\nHost: ums\r\n\r\n")
        try path.nodeSends(Self.answer)
        _ = try path.written(to: path.client)
        try path.clientSends("GET /b HTTP/1.1\r\nHost: ums\r\n\r\n")
        _ = try path.written(to: path.node)
        // The node had closed the idle connection just as the request went out.
        path.node.pipeline.fireChannelInactive()
        path.refreshNodes()
        #expect(path.nodes.count == 2)
        #expect(try path.written(to: path.node).hasPrefix("GET /b HTTP/1.1\r\n"))
        try path.nodeSends(Self.answer)
        #expect(try path.written(to: path.client) == Self.answer)
        #expect(path.requestLines.last?.metadata["retries"] == "1")
    }

    @Test func aPOSTIsNeverSentTwiceAndTheClientGets502() throws {
        let path = try EmbeddedPath(nodes: ["ums1"])
        try path.clientSends("GET /a HTTP/1.1\r\nHost: ums\r\n\r\n")
        try path.nodeSends(Self.answer)
        _ = try path.written(to: path.client)
        try path.clientSends("POST /console/login HTTP/1.1\r\nHost: ums\r\nContent-Length: 2\r\n\r\n{}")
        path.node.pipeline.fireChannelInactive()
        path.refreshNodes()
        #expect(path.nodes.count == 1)
        let answer = try path.written(to: path.client)
        #expect(answer.hasPrefix("HTTP/1.1 502 Bad Gateway\r\n"), "\(answer)")
        #expect(path.client.isActive, "the request was read whole: the connection stays usable")
    }

    @Test func aBodyIsReadOnlyWhileTheNodeCanTakeIt() throws {
        let path = try EmbeddedPath(nodes: ["ums1"])
        try path.clientSends("POST /upload HTTP/1.1\r\nHost: ums\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        #expect(try path.written(to: path.node).hasSuffix("5\r\nhello\r\n"))
        path.node.isWritable = false
        path.node.pipeline.fireChannelWritabilityChanged()
        let readsBefore = path.clientSocket.reads
        path.client.read()
        #expect(path.clientSocket.reads == readsBefore, "no read while the node cannot take more")
        path.node.isWritable = true
        path.node.pipeline.fireChannelWritabilityChanged()
        #expect(path.clientSocket.reads == readsBefore + 1)
        try path.clientSends("0\r\n\r\n")
        #expect(try path.written(to: path.node) == "0\r\n\r\n")
    }

    @Test func aContinueIsPassedOnAndTheAnswerFollows() throws {
        let path = try EmbeddedPath(nodes: ["ums1"])
        try path.clientSends("PUT /upload HTTP/1.1\r\nHost: ums\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        try path.nodeSends("HTTP/1.1 100 Continue\r\n\r\n")
        #expect(try path.written(to: path.client) == "HTTP/1.1 100 Continue\r\n\r\n")
        try path.clientSends("{}")
        try path.nodeSends(Self.answer)
        #expect(try path.written(to: path.client) == Self.answer)
    }

    @Test func aRefusedConnectGoesToTheNextNodeBeforeTheClientNotices() throws {
        let path = try EmbeddedPath(nodes: ["ums1", "ums2"], refusing: ["ums1"])
        try path.clientSends("GET /device-connector/x HTTP/1.1\r\nHost: ums\r\n\r\n")
        #expect(path.nodes.map(\.node) == ["ums2"], "ums1 refused: ums2 got the request")
        try path.nodeSends(Self.answer)
        #expect(try path.written(to: path.client) == Self.answer)
        #expect(path.requestLines.first?.metadata["node"] == "ums2")
    }

    @Test func anUpgradeLeavesHTTPAndRelaysBytesBothWays() throws {
        let path = try EmbeddedPath(nodes: ["ums1"])
        try path.clientSends(
            "GET /device-connector/device/ws-connect HTTP/1.1\r\nHost: ums\r\nUpgrade: websocket\r\n"
                + "Connection: Upgrade\r\n\r\n")
        let head = try path.written(to: path.node)
        #expect(head.contains("Upgrade: websocket\r\n"))
        #expect(head.contains("Connection: Upgrade\r\n"))
        try path.nodeSends("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhi")
        // The decoders leave the pipelines on a later turn of the loop; then bytes move.
        path.loop.run()
        #expect(
            try path.written(to: path.client)
                == "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhi")
        try path.clientSends("frame")
        #expect(try path.written(to: path.node) == "frame")
        try path.nodeSends("back")
        #expect(try path.written(to: path.client) == "back")
        #expect(path.directory.connections(to: "ums1") == 1, "an upgraded connection counts against its node")
        #expect(path.registry.count(relayedTo: "ums1") == 1, "a drain of the node reaches it")
        path.registry.drain("ums1")
        path.loop.run()
        #expect(!path.client.isActive)
        #expect(path.directory.connections(to: "ums1") == 0)
        #expect(path.requestLines.first?.metadata["outcome"] == "upgraded")
        #expect(path.connectionLine?.metadata["outcome"] == "closed")
    }

}
