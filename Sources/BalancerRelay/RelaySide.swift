#if os(Linux)
import CBalancerLinux
import Glibc

/// One socket of a relayed connection, as its loop last saw it: what it reported, what is queued
/// for it, and how much one read from it takes. No decisions: the connection machine makes those.
final class RelaySide {
    let fd: CInt
    /// An edge said there is something to read (bytes, EOF or an error) that was not read yet.
    var readable = false
    /// EPOLLRDHUP: the peer sent its FIN, so a short read has read everything before it.
    var peerShutDown = false
    /// The peer reset or errored: nothing more will be read, and writes fail.
    var hungUp = false
    /// Its EOF has been read (and reported).
    var inputClosed = false
    /// Writing to it is shut down, or will be once `pending` is out (the machine said so).
    var outputClosing = false
    /// The shutdown itself has been done (or made unnecessary by closing the socket).
    var outputClosed = false
    var connected: Bool
    /// Its EOF and its failure have been told to the connection machine (each once).
    var eofReported = false
    var failureReported = false
    /// Bytes for this socket it could not take yet; reading from its partner waits until they are out.
    private(set) var pending: [UInt8] = []
    private var pendingStart = 0
    /// Bytes for this socket waiting in a kernel pipe (the splice path), after `pending`.
    var pipe: SplicePipe?
    /// Why this socket failed (errno), once it has.
    var failure: CInt?
    /// The ACK that completes its connect waits to leave with the first bytes or FIN sent on it.
    private(set) var holdsHandshakeAck = false
    /// How much one read from this socket takes: grows while reads fill up and the partner takes
    /// everything (bulk transfers make fewer, larger calls), shrinks when the partner cannot keep
    /// up, so a stalled connection holds a small remainder, not a whole large read.
    private(set) var readSize = RelaySide.smallestRead

    static let smallestRead = 16 * 1024

    init(fd: CInt, connected: Bool) {
        self.fd = fd
        self.connected = connected
    }

    var hasPending: Bool { pendingStart < pending.count || (pipe?.count ?? 0) > 0 }

    func note(_ events: UInt32) {
        if events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
            readable = true
        }
        if events & (EPOLLRDHUP.rawValue | EPOLLHUP.rawValue) != 0 { peerShutDown = true }
        if events & (EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 { hungUp = true }
    }

    /// Writes `count` bytes at `bytes`, keeping what the socket cannot take; false when it failed.
    /// `more`: a shutdown follows at once, so the kernel holds the bytes for the FIN to join them
    /// in one segment (the peer then handles one packet instead of two, and acknowledges once).
    func send(_ bytes: UnsafeRawPointer, count: Int, more: Bool = false) -> Bool {
        var sent = 0
        let flags = CInt(MSG_NOSIGNAL) | (more ? CInt(MSG_MORE) : 0)
        while sent < count {
            let written = cbl_send(fd, bytes + sent, count - sent, flags)
            if written > 0 {
                sent += written
                holdsHandshakeAck = false
            } else if errno == EINTR {
                continue
            } else if errno == EAGAIN {
                break
            } else {
                failure = errno
                return false
            }
        }
        if sent < count {
            pending = Array(UnsafeRawBufferPointer(start: bytes + sent, count: count - sent))
            pendingStart = 0
        }
        return true
    }

    /// Records a read (or splice) from this socket that brought no bytes: `count` 0 is the peer's
    /// EOF, -1 with EAGAIN means nothing more for now, EINTR asks to read again, any other error is
    /// the socket's failure. True when it failed.
    func readGaveNothing(_ count: Int) -> Bool {
        if count == 0 {
            inputClosed = true
            readable = false
        } else if errno == EAGAIN {
            readable = false
        } else if errno != EINTR {
            failure = errno
            readable = false
            return true
        }
        return false
    }

    /// Writes what is pending; false when the socket failed.
    func flush() -> Bool {
        while pendingStart < pending.count {
            let written = pending.withUnsafeBytes { bytes in
                cbl_send(fd, bytes.baseAddress! + pendingStart, pending.count - pendingStart, CInt(MSG_NOSIGNAL))
            }
            if written > 0 {
                pendingStart += written
                holdsHandshakeAck = false
            } else if errno == EINTR {
                continue
            } else if errno == EAGAIN {
                return true
            } else {
                failure = errno
                return false
            }
        }
        pending = []
        pendingStart = 0
        if let pipe { return flush(pipe) }
        return true
    }

    /// Splices what waits in `pipe` into the socket; false when the socket failed.
    private func flush(_ pipe: SplicePipe) -> Bool {
        while pipe.count > 0 {
            let written = cbl_splice(pipe.readEnd, fd, pipe.count)
            if written > 0 {
                pipe.count -= written
                holdsHandshakeAck = false
            } else if errno == EINTR {
                continue
            } else if errno == EAGAIN {
                return true
            } else {
                // EPIPE included: the relay threads block SIGPIPE, which splice(2) would raise.
                failure = errno
                return false
            }
        }
        return true
    }

    /// The machine asked for writing to be shut down, and nothing is pending any more.
    var outputShutdownDue: Bool { outputClosing && !outputClosed && !hasPending && failure == nil }

    /// Shuts writing down once nothing is pending, if the machine asked for it.
    func shutDownOutputIfDue() {
        guard outputShutdownDue else { return }
        outputClosed = true
        holdsHandshakeAck = false
        Glibc.shutdown(fd, CInt(SHUT_WR))
    }

    /// Before connect(2): the socket starts in delayed-ACK mode (TCP_QUICKACK off), so the
    /// handshake's last ACK leaves in the segment with the first bytes for the node, not in one of
    /// its own (HAProxy's `tcp-smart-connect`). The kernel keeps the mode, as it enters it after a
    /// first exchange anyway: the node's answer and FIN are then acknowledged by the relay's next
    /// segment too: a short connection sends the node about two packets fewer (5.0 -> 3.25).
    func holdHandshakeAck() {
        var off: CInt = 0
        holdsHandshakeAck =
            setsockopt(fd, CInt(IPPROTO_TCP), TCP_QUICKACK, &off, socklen_t(MemoryLayout<CInt>.size)) == 0
    }

    /// Nothing went to the node with the held ACK: it leaves now, so a node that speaks first
    /// (or waits for its accept) is not kept waiting for the kernel's delayed-ACK timer (200 ms).
    func releaseHandshakeAck() {
        guard holdsHandshakeAck else { return }
        holdsHandshakeAck = false
        var on: CInt = 1
        setsockopt(fd, CInt(IPPROTO_TCP), TCP_QUICKACK, &on, socklen_t(MemoryLayout<CInt>.size))
    }

    func adjustReadSize(read: Int, asked: Int, allSent: Bool, limit: Int) {
        if !allSent {
            readSize = max(asked / 2, Self.smallestRead)
        } else if read == asked {
            readSize = min(asked * 2, limit)
        }
    }

    /// Queues `bytes` behind what is pending (a replay to a new node).
    func queue(_ bytes: [UInt8]) {
        pending.append(contentsOf: bytes)
    }
}
#endif
