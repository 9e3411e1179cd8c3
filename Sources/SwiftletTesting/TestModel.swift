import Engine
import Foundation

/// The real default model for tests: located once, loaded once.
public enum TestModel {
    /// SWIFTLET_MODEL_PATH, else the default model in the model store (run `swiftlet pull smollm2` first).
    public static let path: String? = {
        let env = ProcessInfo.processInfo.environment
        if let p = env["SWIFTLET_MODEL_PATH"], FileManager.default.fileExists(atPath: p) { return p }
        return try? ModelStore().resolve(ModelStore.defaultModelName, pull: false)
    }()

    /// True when model tests were explicitly switched off (SWIFTLET_SKIP_MODEL_TESTS=1); otherwise a missing
    /// model is an error, not a skip.
    public static var skipped: Bool { ProcessInfo.processInfo.environment["SWIFTLET_SKIP_MODEL_TESTS"] == "1" }

    public struct Missing: Error, CustomStringConvertible {
        public var description: String {
            "the default model is not available: run `swift run swiftlet pull smollm2` or set SWIFTLET_MODEL_PATH"
        }
    }

    /// The shared engine on the default model (2 threads, 4096-token context).
    public static func engine() throws -> InferenceEngine {
        try shared.get()
    }

    private static let shared: Result<InferenceEngine, Error> = {
        guard let path else { return .failure(Missing()) }
        return Result { try InferenceEngine(path: path, threads: 2, contextLength: 4096) }
    }()
}
