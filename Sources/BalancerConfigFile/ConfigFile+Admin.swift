import BalancerCore
import Foundation
import Yams

extension ConfigFile {
    /// Reads only the `admin` section of `path`: what the operator commands (`status`, `node`,
    /// `reload`, `health`) need to reach the running balancer. A mistake anywhere else in the file,
    /// even broken YAML outside the section, does not stop them: the running balancer may well have
    /// rejected that edit and still serve. Returns nil when the file has no `admin` section.
    public static func loadAdmin(path: String) throws(ConfigErrors) -> AdminSettings? {
        let text: String
        do {
            text = String(decoding: try SmallFile.read(path), as: UTF8.self)
        } catch {
            throw ConfigErrors([ConfigError(file: path, line: 1, column: 1, message: error.description)])
        }
        let directory = (path as NSString).deletingLastPathComponent
        return try parseAdmin(text, file: path, baseDirectory: directory.isEmpty ? "." : directory)
    }

    /// The `admin` section of configuration text; see `loadAdmin(path:)`.
    public static func parseAdmin(
        _ text: String, file: String, baseDirectory: String = "."
    ) throws(ConfigErrors) -> AdminSettings? {
        let root: Node?
        do {
            root = try compose(text)
        } catch {
            // The whole file is not YAML: read the admin section alone, cut out at its top-level key.
            guard let section = adminSection(of: text) else { throw ConfigErrors([syntaxError(error, file: file)]) }
            do {
                root = try compose(section)
            } catch {
                throw ConfigErrors([syntaxError(error, file: file)])
            }
        }
        guard case .mapping(let mapping)? = root else { return nil }
        guard let node = mapping.first(where: { $0.key.scalar?.string == "admin" })?.value else { return nil }
        var reader = ConfigReader(file: file, baseDirectory: baseDirectory)
        let settings = reader.admin(node)
        if !reader.errors.isEmpty { throw ConfigErrors(reader.errors) }
        return settings
    }

    /// The lines from a top-level `admin:` key up to the next top-level line, with the lines
    /// before it blanked, so that positions in errors stay those of the file.
    static func adminSection(of text: String) -> String? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard let start = lines.firstIndex(where: { $0.hasPrefix("admin:") }) else { return nil }
        var end = start + 1
        while end < lines.count {
            let line = lines[end]
            let topLevel = !line.isEmpty && !line.hasPrefix(" ") && !line.hasPrefix("\t") && !line.hasPrefix("#")
            if topLevel { break }
            end += 1
        }
        return (Array(repeating: "", count: start) + lines[start..<end].map(String.init)).joined(separator: "\n")
    }
}
