import GGUF

/// Which positions of a forward pass need logits.
public enum LogitsRequest: Sendable {
    case none, last, all
}

/// What every model architecture implements. A model is not reentrant: callers serialize `forward`.
public protocol LanguageModel: AnyObject, Sendable {
    var config: ModelConfig { get }
    /// A fresh KV cache for one sequence of at most `capacity` positions.
    func makeCache(capacity: Int) -> KVCache
    /// Appends `tokens` to the sequence in `cache` and writes the requested logits to `logits`
    /// (`vocabularySize` floats per returned row, row-major). Returns the number of logit rows written.
    @discardableResult
    func forward(tokens: [Int], cache: KVCache, logits: LogitsRequest, into out: inout [Float]) throws -> Int
}

/// Maps `general.architecture` to model constructors.
public enum ModelRegistry {
    public typealias Constructor = @Sendable (GGUFFile, Int) throws -> any LanguageModel

    nonisolated(unsafe) private static var constructors: [String: Constructor] = [
        "llama": { try LlamaModel(gguf: $0, threads: $1) },
    ]

    public static var supportedArchitectures: [String] { constructors.keys.sorted() }

    /// Loads the model in `gguf` with a pool of `threads` workers.
    public static func load(_ gguf: GGUFFile, threads: Int) throws -> any LanguageModel {
        guard let arch = try gguf.string("general.architecture") else { throw GGUFError.missingMetadata("general.architecture") }
        guard let make = constructors[arch] else {
            throw ModelError.unsupportedArchitecture(arch, supported: supportedArchitectures)
        }
        return try make(gguf, threads)
    }
}
