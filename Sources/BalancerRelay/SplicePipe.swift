#if os(Linux)
import BalancerDataPath
import CBalancerLinux
import Glibc

/// A kernel pipe the bytes of one direction of a relayed connection pass through with splice(2):
/// from the source socket into the pipe, from the pipe into the destination socket, never through
/// user space. What is in the pipe is queued for the destination, as `RelaySide.pending` is.
final class SplicePipe {
    let readEnd: CInt
    let writeEnd: CInt
    /// Bytes spliced in and not yet out.
    var count = 0

    private init(readEnd: CInt, writeEnd: CInt) {
        self.readEnd = readEnd
        self.writeEnd = writeEnd
    }

    /// A new pipe of `size` bytes (the kernel may keep its default), or nil when none can be made.
    static func make(size: Int) -> SplicePipe? {
        var ends: [CInt] = [-1, -1]
        guard cbl_pipe2(&ends, CInt(O_NONBLOCK | O_CLOEXEC)) == 0 else { return nil }
        // Larger than the default 64 KiB: fewer calls per megabyte. Refused beyond the user's
        // pipe budget (fs.pipe-user-pages-soft); the default size still works then.
        _ = cbl_set_pipe_size(ends[1], CInt(size))
        return SplicePipe(readEnd: ends[0], writeEnd: ends[1])
    }

    func close() {
        Glibc.close(readEnd)
        Glibc.close(writeEnd)
    }
}

/// The splice(2) path of one relay loop: which directions are spliced, and the pipes. A pipe is
/// taken when a direction has moved more than the threshold, given back as soon as it is empty
/// (an idle connection holds none), and kept for the next direction that needs one.
final class SplicePool {
    let settings: SpliceSettings
    /// Bytes this loop moved through pipes, never through user space.
    var bytesSpliced = 0
    private var idle: [SplicePipe] = []
    private let budget: DescriptorBudget
    /// Empty pipes kept for reuse; more are closed.
    private static let idleLimit = 32
    /// Descriptors left for connections before pipes are refused: splicing is an optimization,
    /// accepting clients is not.
    private static let reserve = 256

    init(settings: SpliceSettings, budget: DescriptorBudget) {
        self.settings = settings
        self.budget = budget
    }

    /// An empty pipe, or nil when the descriptor budget or the kernel has none to spare (the
    /// direction then keeps copying).
    func take() -> SplicePipe? {
        if let pipe = idle.popLast() { return pipe }
        // A pipe holds two descriptors, as a connection does: counted in the same budget.
        guard budget.used + Self.reserve <= budget.capacity else { return nil }
        budget.takeAnyway()
        guard let pipe = SplicePipe.make(size: settings.pipeSize) else {
            budget.give()
            return nil
        }
        return pipe
    }

    /// Takes back a pipe: kept for reuse while empty, else closed (its bytes are lost with the
    /// connection that owned them).
    func give(_ pipe: SplicePipe) {
        if pipe.count == 0, idle.count < Self.idleLimit {
            idle.append(pipe)
        } else {
            pipe.close()
            budget.give()
        }
    }

    /// Closes the pipes kept for reuse (the loop ends).
    func closeIdle() {
        for pipe in idle {
            pipe.close()
            budget.give()
        }
        idle = []
    }
}

#endif
