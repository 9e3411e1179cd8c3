import DequeModule
import Foundation
import GGUF
import Kernels
import Models
import Tokenizer

/// What /v1/embeddings needs of a model: its tokenizer and limits, and unit vectors for token sequences.
public protocol Embedder: Sendable {
    func tokenize(_ text: String) -> [Int]
    /// Tokens one input may have.
    var contextLength: Int { get }
    var vocabularySize: Int { get }
    /// Floats per embedding.
    var dimensions: Int { get }
    /// Matryoshka models: the fewest leading dimensions a vector may be truncated to; nil when the model
    /// was not trained to be truncated.
    var minimumDimensions: Int? { get }
    /// Unit vectors, one per input, in order.
    func embed(_ inputs: [[Int]]) async throws -> [[Float]]
}

/// A loaded embedding model (an encoder such as BERT) with its tokenizer.
public final class EmbeddingEngine: Sendable {
    public let gguf: GGUFFile
    public let model: any EmbeddingModel
    public let tokenizer: Tokenizer
    public let facts: ModelFacts
    /// Tokens one input may have, its special tokens included.
    public let contextLength: Int
    public let modelName: String
    /// Matryoshka models: the fewest leading dimensions a vector may be truncated to (then normalised
    /// again); nil when the model was not trained to be truncated.
    public let minimumDimensions: Int?

    public init(path: String, threads: Int? = nil, maxBatchTokens: Int? = nil, minimumDimensions: Int? = nil) throws {
        gguf = try GGUFFile(path: path)
        model = try ModelRegistry.loadEncoder(gguf, threads: threads ?? ThreadPoolDefaults.threads, maxBatchTokens: maxBatchTokens)
        tokenizer = try Tokenizer(gguf: gguf)
        facts = ModelFacts(gguf: gguf, config: model.config)
        contextLength = model.config.contextLength
        let full = model.dimensions
        self.minimumDimensions = minimumDimensions.map { min(max($0, 1), full) }
        modelName = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
    }

    /// Whether the file at `path` holds an embedding model (an encoder) rather than a generative one.
    public static func isEmbeddingModel(path: String) throws -> Bool {
        try ModelRegistry.isEncoder(try GGUFFile(path: path))
    }

    /// The tokens of `text` with the model's own special tokens around it ([CLS] ... [SEP] for BERT).
    /// Special tokens written in the text count as such, as in the model's own tokenizer.
    public func tokenize(_ text: String) -> [Int] {
        tokenizer.encode(text, addSpecial: true, parseSpecial: true)
    }

    /// Unit-length embeddings of token sequences, in as few forward passes as the model's tokens per pass allow.
    public func embed(_ sequences: [[Int]]) throws -> [[Float]] {
        let d = model.dimensions, limit = model.maxBatchTokens
        var flat = [Float](repeating: 0, count: sequences.count * d)
        var start = 0
        while start < sequences.count {
            var end = start, tokens = 0
            while end < sequences.count, end == start || tokens + sequences[end].count <= limit {
                tokens += sequences[end].count
                end += 1
            }
            try flat.withUnsafeMutableBufferPointer {
                try model.embed(Array(sequences[start..<end]), into: $0.baseAddress! + start * d)
            }
            start = end
        }
        return (0..<sequences.count).map { Self.normalized(flat[$0 * d..<($0 + 1) * d]) }
    }

    /// The first `dimensions` of a unit vector, of unit length again (Matryoshka truncation).
    public static func truncated(_ v: [Float], to dimensions: Int) -> [Float] {
        dimensions >= v.count ? v : normalized(v[..<dimensions])
    }

    /// v / |v| (the norm in double); a zero vector stays zero.
    static func normalized(_ v: ArraySlice<Float>) -> [Float] {
        var sum = 0.0
        for x in v { sum += Double(x) * Double(x) }
        guard sum > 0 else { return Array(v) }
        let inv = 1 / sum.squareRoot()
        return v.map { Float(Double($0) * inv) }
    }
}

extension EmbeddingService: Embedder {
    public func tokenize(_ text: String) -> [Int] { engine.tokenize(text) }
    public var contextLength: Int { engine.contextLength }
    public var vocabularySize: Int { engine.model.config.vocabularySize }
    public var dimensions: Int { engine.model.dimensions }
    public var minimumDimensions: Int? { engine.minimumDimensions }
}

/// Embeddings of a decoder with last-token pooling (Qwen3-Embedding and its kind): every input is a
/// prefill-only sequence in the batch engine's scheduler, batched with whatever else runs (other
/// embeddings, generations) and sharing its prefix cache; its vector is the last token's hidden state
/// after the final norm, normalised.
public struct DecoderEmbeddings: Embedder {
    public let engine: InferenceEngine
    public let service: any GenerationService
    /// Inputs in flight at once per request (the rest wait for them, not in the engine's queue).
    public static let window = 64

    /// nil unless the file declares last-token pooling (the only pooling a causal model's states support
    /// here).
    public init?(engine: InferenceEngine, service: any GenerationService) {
        guard engine.pooling == .last else { return nil }
        self.engine = engine
        self.service = service
    }

    /// The model's own special tokens around the text (Qwen3-Embedding appends EOS).
    public func tokenize(_ text: String) -> [Int] { engine.tokenizer.encode(text, addSpecial: true, parseSpecial: true) }
    public var contextLength: Int { min(engine.contextLength, service.maxSequenceTokens) }
    public var vocabularySize: Int { engine.model.config.vocabularySize }
    public var dimensions: Int { engine.model.config.embeddingLength }
    public var minimumDimensions: Int? { engine.minimumDimensions }

    public func embed(_ inputs: [[Int]]) async throws -> [[Float]] {
        var out: [[Float]] = []
        out.reserveCapacity(inputs.count)
        for start in stride(from: 0, to: inputs.count, by: Self.window) {
            let streams = try inputs[start..<min(start + Self.window, inputs.count)].map {
                try service.submit(GenerationRequest(promptTokens: $0, maxTokens: 0, embedding: true))
            }
            for stream in streams {
                var vector: [Float]?
                for try await event in stream {
                    if case .finished(let r) = event { vector = r.embedding }
                }
                guard let vector else { throw EngineError.invalidParameter("input", "the engine returned no embedding") }
                out.append(EmbeddingEngine.normalized(vector[...]))
            }
        }
        return out
    }
}

/// Runs embedding requests in batches on one thread: whatever arrives while a batch runs goes into the
/// next, oldest first, up to the model's tokens per pass. A request's vectors do not depend on what it
/// was batched with (the model computes each sequence alone).
public final class EmbeddingService: @unchecked Sendable {
    // @unchecked: the queue and counters are guarded by `condition`.
    public let engine: EmbeddingEngine
    /// Inputs that may wait before `embed` throws `queueFull`.
    public let maxWaiting: Int
    private let maxBatchTokens: Int
    private let condition = NSCondition()
    private var queue = Deque<Item>()
    private var running = 0
    private var stopping = false
    private var requests = 0
    private var steps = 0
    private var tokensComputed = 0

    /// One input of a request; the request's `Pending` resumes when all of its inputs are done.
    struct Item {
        let tokens: [Int]
        let index: Int
        let pending: Pending
    }

    final class Pending: @unchecked Sendable {
        // Touched only by the service thread.
        var vectors: [[Float]]
        var remaining: Int
        let continuation: CheckedContinuation<[[Float]], Error>
        init(count: Int, continuation: CheckedContinuation<[[Float]], Error>) {
            vectors = Array(repeating: [], count: count)
            remaining = count
            self.continuation = continuation
        }
    }

    public init(engine: EmbeddingEngine, maxWaiting: Int = 4096) {
        self.engine = engine
        self.maxWaiting = maxWaiting
        maxBatchTokens = engine.model.maxBatchTokens
        let thread = Thread { [self] in self.loop() }
        thread.name = "swiftlet-embeddings"
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Unit vectors for `inputs` (token sequences, each 1 to `engine.contextLength` tokens in the vocabulary).
    public func embed(_ inputs: [[Int]]) async throws -> [[Float]] {
        let vocab = engine.model.config.vocabularySize
        for (i, s) in inputs.enumerated() {
            guard !s.isEmpty, s.count <= engine.contextLength else {
                throw EngineError.invalidParameter("input[\(i)]", "has \(s.count) tokens; this model takes 1 to \(engine.contextLength)")
            }
            if let bad = s.first(where: { !(0..<vocab).contains($0) }) {
                throw EngineError.invalidParameter("input[\(i)]", "token \(bad) is not in the vocabulary (0..<\(vocab))")
            }
        }
        guard !inputs.isEmpty else { return [] }
        return try await withCheckedThrowingContinuation { continuation in
            condition.lock()
            defer { condition.unlock() }
            if stopping {
                continuation.resume(throwing: GenerationServiceError.shuttingDown)
                return
            }
            guard queue.count + inputs.count <= maxWaiting else {
                continuation.resume(throwing: GenerationServiceError.queueFull(capacity: maxWaiting))
                return
            }
            let pending = Pending(count: inputs.count, continuation: continuation)
            for (i, s) in inputs.enumerated() { queue.append(Item(tokens: s, index: i, pending: pending)) }
            requests += 1
            condition.signal()
        }
    }

    public var stats: ServiceStats {
        condition.lock()
        defer { condition.unlock() }
        var s = ServiceStats(running: running, waiting: queue.count)
        s.steps = steps
        s.tokensComputed = tokensComputed
        return s
    }

    /// Stops taking requests; queued ones still run.
    public func shutdown() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if queue.isEmpty && stopping {
                condition.unlock()
                return
            }
            var batch: [Item] = []
            var tokens = 0
            while let next = queue.first, batch.isEmpty || tokens + next.tokens.count <= maxBatchTokens {
                tokens += next.tokens.count
                batch.append(queue.removeFirst())
            }
            running = batch.count
            condition.unlock()

            let result = Result { try engine.embed(batch.map(\.tokens)) }
            condition.lock()
            running = 0
            steps += 1
            tokensComputed += tokens
            condition.unlock()
            switch result {
            case .success(let vectors):
                for (item, v) in zip(batch, vectors) {
                    let p = item.pending
                    guard p.remaining > 0 else { continue }
                    p.vectors[item.index] = v
                    p.remaining -= 1
                    if p.remaining == 0 { p.continuation.resume(returning: p.vectors) }
                }
            case .failure(let error):
                for item in batch where item.pending.remaining > 0 {
                    item.pending.remaining = 0
                    item.pending.continuation.resume(throwing: error)
                }
            }
        }
    }
}
