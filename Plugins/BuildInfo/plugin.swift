import Foundation
import PackagePlugin

/// Records the git commit the binary is built from, for `ums-balancer --version`.
///
/// A prebuild command runs before every build; it rewrites its file only when the commit changes,
/// so an unchanged checkout recompiles nothing. Outside a git checkout the commit is "unknown".
@main
struct BuildInfo: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appending(path: "generated")
        let script = """
            mkdir -p "$2"
            commit=$(git -C "$1" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
            if [ "$commit" != unknown ] && [ -n "$(git -C "$1" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
                commit="$commit-modified"
            fi
            text="/// The git commit this binary was built from.
            public let buildCommit = \\"$commit\\""
            [ "$(cat "$2/BuildCommit.swift" 2>/dev/null)" = "$text" ] || printf '%s\\n' "$text" > "$2/BuildCommit.swift"
            """
        return [
            .prebuildCommand(
                displayName: "Recording the git commit",
                executable: URL(fileURLWithPath: "/bin/sh"),
                arguments: ["-c", script, "sh", context.package.directoryURL.path, output.path],
                outputFilesDirectory: output)
        ]
    }
}
