import BalancerConfigFile
import BalancerCore
import Foundation
import FuzzSupport

/// An empty folder for relative paths in the fuzzed file: nothing a file names can be found.
enum EmptyFolder {
    static let path: String = {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ums-fuzz-config-\(getpid())").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()
}

/// `ConfigFile.check` on any text: it never traps or hangs, and every problem it reports points
/// into the file (`fuzz.yaml:LINE:COL: message`).
func fuzzConfigFile(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = String(decoding: fuzzInput(data, size), as: UTF8.self)
    let problems: [ConfigError]
    do throws(ConfigErrors) {
        let checked = try ConfigFile.check(text, file: "fuzz.yaml", baseDirectory: EmptyFolder.path)
        invariant(checked.warnings.allSatisfy(\.isWarning), "a warning that is an error: \(checked.warnings)")
        problems = checked.warnings
    } catch {
        invariant(!error.errors.isEmpty, "refused without saying why")
        problems = error.errors
    }
    for problem in problems {
        invariant(
            problem.file == "fuzz.yaml" && problem.line >= 1 && problem.column >= 1 && !problem.message.isEmpty,
            "problem without a place or a message: \(problem)")
    }
    return 0
}

runFuzzer(fuzzConfigFile)
