/// Turns a stream of probe results into up/down with rise/fall damping, so one lost probe
/// does not take a node out and one lucky probe does not bring a broken node back.
public struct HealthTracker: Sendable, Hashable {
    public let rise: Int
    public let fall: Int
    /// `nil` until the first probe has answered: the first result decides at once, so a
    /// balancer that starts does not wait `rise` intervals before it can serve.
    public private(set) var health: NodeHealth?
    private var streak = 0

    public init(rise: Int, fall: Int) {
        self.rise = max(1, rise)
        self.fall = max(1, fall)
    }

    /// Records one probe result; returns the new health when it changed.
    public mutating func record(success: Bool) -> NodeHealth? {
        let observed: NodeHealth = success ? .up : .down
        guard let current = health else {
            health = observed
            streak = 0
            return observed
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
