/// One problem in a configuration file, located by line and column.
public struct ConfigError: Error, Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public var message: String
    /// A warning: the configuration is valid, but does something an operator should know.
    public var isWarning: Bool

    public init(file: String, line: Int, column: Int, message: String, isWarning: Bool = false) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
        self.isWarning = isWarning
    }

    /// `FILE:LINE:COL: message` (`FILE:LINE:COL: warning: message`), the form editors and CI logs understand.
    public var description: String { "\(file):\(line):\(column): \(isWarning ? "warning: " : "")\(message)" }
}

/// Every problem found in one configuration file, in file order.
public struct ConfigErrors: Error, Sendable, Hashable, CustomStringConvertible {
    public var errors: [ConfigError]

    public init(_ errors: [ConfigError]) {
        self.errors = errors.sorted { ($0.line, $0.column) < ($1.line, $1.column) }
    }

    /// One `FILE:LINE:COL: message` line per problem.
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
