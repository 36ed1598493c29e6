import BalancerCore

extension NodeStatus {
    /// Takes what one fuzz byte reports: bit 0 the health (down when set), bits 1-3 the mode (one of
    /// `NodeMode.allCases`), bits 4-5 the version (none, 12.6, 12.7, 12.8) and, when `maintenance`
    /// is asked for, bit 6 the operator's maintenance.
    public mutating func take(fuzzReport report: UInt8, maintenance: Bool) {
        health = report & 1 == 0 ? .up : .down
        mode = NodeMode.allCases[Int(report >> 1) % NodeMode.allCases.count]
        version = [nil, "12.6", "12.7", "12.8"][Int(report >> 4) & 3]
        if maintenance { admin = report & 0x40 == 0 ? .active : .maintenance }
    }
}
