import Engine
import Foundation
import Models

/// The real models for tests: located once, loaded once each.
public enum TestModel {
    /// The models the tests run on: the default (llama architecture, Q4_1), Gemma 3 270M (gemma3,
    /// K-quants mixed with Q5_0 and Q8_0, sliding-window layers) and the embedding model all-MiniLM-L6-v2
    /// (bert, F16, converted from its sentence-transformers files). `scripts/test` pulls all three.
    public enum Name: String, CaseIterable, Sendable, CustomStringConvertible {
        case smollm2
        case gemma3 = "gemma3-270m"
        case minilm = "all-minilm-l6-v2"

        /// The models that generate text (all but the embedding model).
        public static let generative: [Name] = [.smollm2, .gemma3]

        /// Overrides the model store's copy.
        var environmentKey: String {
            switch self {
            case .smollm2: "SWIFTLET_MODEL_PATH"
            case .gemma3: "SWIFTLET_GEMMA3_PATH"
            case .minilm: "SWIFTLET_MINILM_PATH"
            }
        }
        public var description: String { rawValue }
    }

    /// SWIFTLET_MODEL_PATH, else the default model in the model store (run `swiftlet pull smollm2` first).
    public static var path: String? { path(.smollm2) }

    /// The environment's override, else the model store's copy (nil when not pulled).
    public static func path(_ name: Name) -> String? { paths[name] ?? nil }

    private static let paths: [Name: String?] = Dictionary(uniqueKeysWithValues: Name.allCases.map { name in
        let env = ProcessInfo.processInfo.environment
        if let p = env[name.environmentKey], FileManager.default.fileExists(atPath: p) { return (name, p) }
        return (name, try? ModelStore().resolve(name.rawValue, pull: false))
    })

    /// True when model tests were explicitly switched off (SWIFTLET_SKIP_MODEL_TESTS=1); otherwise a missing
    /// model is an error, not a skip.
    public static var skipped: Bool { ProcessInfo.processInfo.environment["SWIFTLET_SKIP_MODEL_TESTS"] == "1" }

    public struct Missing: Error, CustomStringConvertible {
        var name: Name
        public var description: String {
            "the model \(name) is not available: run `swift run swiftlet pull \(name)` or set \(name.environmentKey)"
        }
    }

    /// The shared engine on the default model (2 threads, 4096-token context).
    public static func engine() throws -> InferenceEngine {
        try engine(.smollm2)
    }

    /// The shared engine on `name` (2 threads, 4096-token context), loaded on first use.
    public static func engine(_ name: Name) throws -> InferenceEngine {
        switch name {
        case .smollm2: try smollm2.get()
        case .gemma3: try gemma3.get()
        case .minilm: throw ModelError.embeddingOnly("bert")
        }
    }

    /// The shared embedding engine on all-MiniLM-L6-v2 (2 threads), loaded on first use.
    public static func embeddingEngine() throws -> EmbeddingEngine { try minilm.get() }

    private static let smollm2 = load(.smollm2)
    private static let gemma3 = load(.gemma3)
    private static let minilm = Result<EmbeddingEngine, Error> {
        guard let path = path(.minilm) else { throw Missing(name: .minilm) }
        return try EmbeddingEngine(path: path, threads: 2)
    }

    private static func load(_ name: Name) -> Result<InferenceEngine, Error> {
        Result {
            guard let path = path(name) else { throw Missing(name: name) }
            return try InferenceEngine(path: path, threads: 2, contextLength: 4096)
        }
    }
}
