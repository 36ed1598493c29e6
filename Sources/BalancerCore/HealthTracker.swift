/// Turns a stream of probe results into up/down with rise/fall damping, so one lost probe
/// does not take a node out and one lucky probe does not bring a broken node back. A node whose
/// probes alternate (flap) for `rise + fall` probes in a row is taken down until it answers
/// `rise` times in a row: a flapping status endpoint is not trusted with traffic.
public struct HealthTracker: Sendable, Hashable {
    public let rise: Int
    public let fall: Int
    /// `nil` until the first probe has answered: the first result decides at once, so a
    /// balancer that starts does not wait `rise` intervals before it can serve.
    public private(set) var health: NodeHealth?
    private var streak = 0
    private var lastResult: Bool?
    private var flips = 0

    public init(rise: Int, fall: Int) {
        self.rise = max(1, rise)
        self.fall = max(1, fall)
    }

    /// The last probes alternated long enough to distrust the node.
    public var isFlapping: Bool { flips >= rise + fall }

    /// Records one probe result; returns the new health when it changed.
    public mutating func record(success: Bool) -> NodeHealth? {
        flips = lastResult.map { $0 != success } == true ? flips + 1 : 0
        lastResult = success
        let observed: NodeHealth = success ? .up : .down
        guard let current = health else {
            health = observed
            streak = 0
            return observed
        }
        if current == .up && isFlapping {
            health = .down
            streak = 0
            return .down
        }
        if observed == current {
            streak = 0
            return nil
        }
        streak += 1
        if streak >= (success ? rise : fall) {
            health = observed
            streak = 0
            return observed
        }
        return nil
    }
}
