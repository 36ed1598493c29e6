import BalancerCore
import Foundation
import Yams

/// Reads and validates `ums-balancer` configuration files.
public enum ConfigFile {
    /// A valid configuration and the warnings about it, in file order.
    public struct Checked: Sendable {
        public var configuration: BalancerConfiguration
        public var warnings: [ConfigError]
    }

    /// Reads `path` and returns the configuration, or every problem in it.
    public static func load(path: String) throws(ConfigErrors) -> BalancerConfiguration {
        try check(path: path).configuration
    }

    /// Reads `path` and returns the configuration with its warnings, or every problem in it.
    public static func check(path: String) throws(ConfigErrors) -> Checked {
        let text: String
        do {
            text = String(decoding: try SmallFile.read(path), as: UTF8.self)
        } catch {
            throw ConfigErrors([ConfigError(file: path, line: 1, column: 1, message: error.description)])
        }
        let directory = (path as NSString).deletingLastPathComponent
        return try check(text, file: path, baseDirectory: directory.isEmpty ? "." : directory)
    }

    /// Parses configuration text; `file` names it in errors, `baseDirectory` anchors relative paths.
    public static func parse(
        _ text: String,
        file: String,
        baseDirectory: String = "."
    ) throws(ConfigErrors) -> BalancerConfiguration {
        try check(text, file: file, baseDirectory: baseDirectory).configuration
    }

    /// Parses configuration text into the configuration with its warnings.
    public static func check(
        _ text: String,
        file: String,
        baseDirectory: String = "."
    ) throws(ConfigErrors) -> Checked {
        let root: Node?
        do {
            root = try compose(text)
        } catch {
            throw ConfigErrors([syntaxError(error, file: file)])
        }
        var reader = ConfigReader(file: file, baseDirectory: baseDirectory)
        let configuration = reader.configuration(root)
        if !reader.errors.isEmpty { throw ConfigErrors(reader.errors) }
        guard let configuration else {
            throw ConfigErrors([ConfigError(file: file, line: 1, column: 1, message: "invalid configuration")])
        }
        return Checked(
            configuration: configuration,
            warnings: reader.warnings.sorted { ($0.line, $0.column) < ($1.line, $1.column) })
    }

    /// The YAML tree of `text`, in time linear in its size: anchors and aliases are refused first.
    static func compose(_ text: String) throws -> Node? {
        if let found = YAMLAliasScan.first(in: text) { throw found }
        return try Yams.compose(yaml: text)
    }

    static func syntaxError(_ error: any Error, file: String) -> ConfigError {
        switch error {
        case let found as YAMLAliasScan.Found:
            return ConfigError(
                file: file, line: found.line, column: found.column,
                message:
                    "YAML \(found.kind == "anchor" ? "anchors" : "aliases") are not supported: write the value out where it is used"
            )
        case YamlError.scanner(_, let problem, let mark, _),
            YamlError.parser(_, let problem, let mark, _),
            YamlError.composer(_, let problem, let mark, _):
            return ConfigError(file: file, line: mark.line, column: mark.column, message: "YAML syntax: \(problem)")
        case YamlError.duplicatedKeysInMapping(let duplicates, let context):
            let key = duplicates.first ?? "?"
            return ConfigError(
                file: file, line: context.mark.line, column: context.mark.column, message: "duplicate key '\(key)'")
        case YamlError.reader(let problem, _, _, _):
            return ConfigError(file: file, line: 1, column: 1, message: "cannot read YAML: \(problem)")
        default:
            return ConfigError(file: file, line: 1, column: 1, message: "cannot read YAML: \(error)")
        }
    }
}
