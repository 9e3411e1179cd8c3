import GGUF
import Kernels

/// Which positions of a forward pass need logits.
public enum LogitsRequest: Sendable {
    case none, last, all
}

/// One sequence's share of a batched forward pass.
public struct BatchSequence: Sendable {
    /// Its tokens in the batch (consecutive in `ForwardBatch.tokens`, after the previous sequence's).
    public var tokenCount: Int
    /// Positions already in its KV cache; its tokens take the next ones.
    public var startPosition: Int
    /// Its KV blocks in the storage, covering every position up to `startPosition + tokenCount`.
    public var blockTable: [Int32]
    /// How many of its last tokens to return logits for (usually 0 or 1).
    public var logitCount: Int
    /// With split storage: its blocks of the sliding-window layers. Only the entries of its last window
    /// of positions (from `startPosition - slidingWindow + 1` on) are read; earlier ones may be -1.
    public var slidingBlockTable: [Int32]
    /// Embeddings (last-token pooling): instead of logits, its last row's hidden state after the final norm
    /// (`embeddingLength` floats) goes to the hidden output. `logitCount` is then 0 or 1.
    public var hidden: Bool

    public init(tokenCount: Int, startPosition: Int, blockTable: [Int32], logitCount: Int, slidingBlockTable: [Int32] = [],
                hidden: Bool = false) {
        self.tokenCount = tokenCount
        self.startPosition = startPosition
        self.blockTable = blockTable
        self.logitCount = logitCount
        self.slidingBlockTable = slidingBlockTable
        self.hidden = hidden
    }
}

/// The tokens of several sequences run through the model together (one pass over the weights).
public struct ForwardBatch: Sendable {
    public var tokens: [Int] = []
    public var sequences: [BatchSequence] = []

    public init() {}

    public mutating func append(_ tokens: some Collection<Int>, as sequence: BatchSequence) {
        precondition(tokens.count == sequence.tokenCount)
        self.tokens.append(contentsOf: tokens)
        sequences.append(sequence)
    }

    public mutating func removeAll() {
        tokens.removeAll(keepingCapacity: true)
        sequences.removeAll(keepingCapacity: true)
    }

    /// Logit rows the batch returns: each sequence's `logitCount`, in order (hidden ones apart).
    public var logitRows: Int { sequences.reduce(0) { $0 + ($1.hidden ? 0 : $1.logitCount) } }
    /// Hidden-state rows the batch returns (sequences with `hidden`), in order.
    public var hiddenRows: Int { sequences.reduce(0) { $0 + ($1.hidden ? $1.logitCount : 0) } }
}

/// What every model architecture implements. A model is not reentrant: callers serialize `forward`.
public protocol LanguageModel: AnyObject, Sendable {
    var config: ModelConfig { get }
    /// The threads the model computes on; the engine runs its other per-step work (sampling) on them too.
    var pool: ThreadPool { get }
    /// The most tokens one `forward(_:storage:logits:)` takes.
    var maxBatchTokens: Int { get }
    /// A fresh KV cache for one sequence of at most `capacity` positions.
    func makeCache(capacity: Int) -> KVCache
    /// Block storage for the KV caches of many sequences (sliding-window layers in the same blocks).
    func makeStorage(blocks: Int, blockSize: Int) -> KVBlockStorage
    /// The longest sliding window of its layers; nil when every layer attends to the whole context.
    var slidingWindow: Int? { get }
    /// How many of its layers have a sliding window.
    var slidingLayerCount: Int { get }
    /// Mixture of experts: tokens routed to each expert so far, summed over layers (empty for dense models).
    func expertRouting() -> [Int]
    /// Split block storage: `blocks` for the full-attention layers, `slidingBlocks` for the sliding-window
    /// ones (see `BatchSequence.slidingBlockTable`). Without sliding layers, the same as `makeStorage`.
    func makeStorage(blocks: Int, slidingBlocks: Int, blockSize: Int) -> KVBlockStorage
    /// Runs the batch, writing its sequences' keys and values into `storage` through their block
    /// tables, `batch.logitRows` rows of logits (`vocabularySize` floats each) to `logits`, and
    /// `batch.hiddenRows` hidden states (`embeddingLength` floats each) to `hidden`.
    func forward(_ batch: ForwardBatch, storage: KVBlockStorage, logits: UnsafeMutablePointer<Float>,
                 hidden: UnsafeMutablePointer<Float>?) throws
    /// Appends `tokens` to the sequence in `cache` and writes the requested logits to `logits`
    /// (`vocabularySize` floats per returned row, row-major). Returns the number of logit rows written.
    @discardableResult
    func forward(tokens: [Int], cache: KVCache, logits: LogitsRequest, into out: inout [Float]) throws -> Int
}

extension LanguageModel {
    /// A batch without hidden-state rows.
    public func forward(_ batch: ForwardBatch, storage: KVBlockStorage, logits: UnsafeMutablePointer<Float>) throws {
        try forward(batch, storage: storage, logits: logits, hidden: nil)
    }
}

/// Maps `general.architecture` to model constructors.
public enum ModelRegistry {
    public typealias Constructor = @Sendable (GGUFFile, Int) throws -> any LanguageModel

    /// Each architecture's file reads its config and says which decoder parts it uses.
    private static let specs: [String: @Sendable (GGUFFile) throws -> DecoderSpec] = [
        "llama": Llama.spec,
        "qwen2": Qwen.spec,
        "qwen3": Qwen.spec,
        "qwen2moe": Qwen.spec,
        "qwen3moe": Qwen.spec,
        "olmoe": OLMoE.spec,
        "phi3": Phi3.spec,
        "gemma3": Gemma3.spec,
    ]

    private static let constructors: [String: Constructor] = specs.mapValues { spec in
        { gguf, threads in try DecoderModel(spec(gguf), gguf: gguf, threads: threads) }
    }

    /// Encoders: they embed, and do not generate.
    private static let encoders: [String: @Sendable (GGUFFile) throws -> EncoderSpec] = [
        "bert": Bert.spec,
        "nomic-bert": NomicBert.spec,
    ]

    public static var supportedArchitectures: [String] { (Array(constructors.keys) + Array(encoders.keys)).sorted() }

    /// Whether `general.architecture` names an encoder (an embedding model) rather than a decoder.
    public static func isEncoder(_ gguf: GGUFFile) throws -> Bool {
        guard let arch = try gguf.string("general.architecture") else { throw GGUFError.missingMetadata("general.architecture") }
        return encoders[arch] != nil
    }

    /// Loads the embedding model in `gguf` with a pool of `threads` workers.
    public static func loadEncoder(_ gguf: GGUFFile, threads: Int, maxBatchTokens: Int? = nil) throws -> any EmbeddingModel {
        guard let arch = try gguf.string("general.architecture") else { throw GGUFError.missingMetadata("general.architecture") }
        guard let spec = encoders[arch] else {
            if constructors[arch] != nil { throw ModelError.generativeOnly(arch) }
            throw ModelError.unsupportedArchitecture(arch, supported: supportedArchitectures)
        }
        return try EncoderModel(spec(gguf), gguf: gguf, threads: threads, maxBatchTokens: maxBatchTokens)
    }

    /// Loads the model in `gguf` with a pool of `threads` workers.
    public static func load(_ gguf: GGUFFile, threads: Int) throws -> any LanguageModel {
        guard let arch = try gguf.string("general.architecture") else { throw GGUFError.missingMetadata("general.architecture") }
        guard let make = constructors[arch] else {
            if encoders[arch] != nil { throw ModelError.embeddingOnly(arch) }
            throw ModelError.unsupportedArchitecture(arch, supported: supportedArchitectures)
        }
        return try make(gguf, threads)
    }
}
