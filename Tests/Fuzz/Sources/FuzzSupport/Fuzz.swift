#if canImport(Glibc)
import Glibc
#endif
import FuzzDriver

// SwiftPM links an executable's top-level code as its `main`, so libFuzzer's own main is not used:
// each target's main.swift calls `runFuzzer`, which hands the command line to libFuzzer's driver.

nonisolated(unsafe) private var body: ((UnsafeRawBufferPointer) -> Void)?

/// Runs libFuzzer with the process's arguments, calling `test` once per input. Never returns.
public func runFuzzer(_ test: @escaping (UnsafeRawBufferPointer) -> Void) -> Never {
    body = test
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    let rc = LLVMFuzzerRunDriver(&argc, &argv) { data, size in
        body!(UnsafeRawBufferPointer(start: data, count: size))
        return 0
    }
    exit(rc)
}

/// A property every input must have: a failure is a crash that libFuzzer records with its input.
public func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
                  file: StaticString = #file, line: UInt = #line) {
    if !condition() { fatalError(message(), file: file, line: line) }
}

/// Splits an input into pieces at a separator byte sequence (for targets that take several strings).
public func split(_ bytes: UnsafeRawBufferPointer, separator: [UInt8]) -> [[UInt8]] {
    var parts: [[UInt8]] = []
    var current: [UInt8] = []
    var i = 0
    let n = bytes.count
    while i < n {
        if i + separator.count <= n, separator.indices.allSatisfy({ bytes[i + $0] == separator[$0] }) {
            parts.append(current)
            current = []
            i += separator.count
        } else {
            current.append(bytes[i])
            i += 1
        }
    }
    parts.append(current)
    return parts
}

/// The default model (SmolLM2-135M-Instruct Q4_1) as the tests find it: SWIFTLET_MODEL_PATH or
/// SWIFTLET_MODEL, else the model store ($SWIFTLET_MODELS, $XDG_CACHE_HOME/swiftlet/models,
/// ~/.cache/swiftlet/models).
public func defaultModelPath() -> String? {
    func env(_ k: String) -> String? { getenv(k).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } }
    func exists(_ p: String) -> Bool { access(p, R_OK) == 0 }
    for k in ["SWIFTLET_MODEL_PATH", "SWIFTLET_MODEL"] { if let p = env(k), exists(p) { return p } }
    let file = "SmolLM2-135M-Instruct.Q4_1.gguf"
    var dirs: [String] = []
    if let d = env("SWIFTLET_MODELS") { dirs.append(d) }
    if let d = env("XDG_CACHE_HOME") { dirs.append(d + "/swiftlet/models") }
    if let h = env("HOME") { dirs.append(h + "/.cache/swiftlet/models") }
    return dirs.map { $0 + "/" + file }.first(where: exists)
}
