import GGUF

/// Hyper-parameters of a decoder-only transformer, read from GGUF metadata (`{arch}.*` keys).
public struct ModelConfig: Sendable, Equatable {
    public var architecture: String
    public var name: String
    public var layerCount: Int
    public var contextLength: Int
    public var embeddingLength: Int
    public var feedForwardLength: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    public var ropeDim: Int
    public var ropeFreqBase: Float
    public var ropeFreqScale: Float
    public var ropeNeox: Bool
    public var rmsNormEps: Float
    public var vocabularySize: Int
    /// Mixture of experts: experts per layer and how many each token uses (0: a dense feed-forward).
    public var expertCount: Int
    public var expertUsedCount: Int
    /// Rows of each expert's gate and up matrices, and of the shared expert's (0: none).
    public var expertFeedForwardLength: Int
    public var sharedExpertFeedForwardLength: Int

    public init(gguf: GGUFFile) throws {
        guard let arch = try gguf.string("general.architecture") else { throw GGUFError.missingMetadata("general.architecture") }
        architecture = arch
        name = (try? gguf.string("general.name")) ?? nil ?? arch
        func req(_ k: String) throws -> Int {
            let v = try gguf.requiredInt("\(arch).\(k)")
            guard v > 0, v < 1 << 24 else { throw ModelError.invalidHyperparameter("\(arch).\(k)", "\(v)") }
            return v
        }
        layerCount = try req("block_count")
        contextLength = try req("context_length")
        embeddingLength = try req("embedding_length")
        feedForwardLength = try req("feed_forward_length")
        expertCount = try gguf.int("\(arch).expert_count") ?? 0
        expertUsedCount = try gguf.int("\(arch).expert_used_count") ?? 0
        guard (0...256).contains(expertCount), expertCount == 0 || (1...expertCount).contains(expertUsedCount) else {
            throw ModelError.invalidHyperparameter("\(arch).expert_count / expert_used_count", "\(expertCount) / \(expertUsedCount)")
        }
        expertFeedForwardLength = try gguf.int("\(arch).expert_feed_forward_length") ?? feedForwardLength
        sharedExpertFeedForwardLength = try gguf.int("\(arch).expert_shared_feed_forward_length") ?? 0
        for (key, v) in [("expert_feed_forward_length", expertFeedForwardLength),
                         ("expert_shared_feed_forward_length", sharedExpertFeedForwardLength)] where !(0..<(1 << 24)).contains(v) {
            throw ModelError.invalidHyperparameter("\(arch).\(key)", "\(v)")
        }
        headCount = try req("attention.head_count")
        kvHeadCount = try gguf.int("\(arch).attention.head_count_kv") ?? headCount
        guard kvHeadCount > 0, headCount % kvHeadCount == 0 else {
            throw ModelError.invalidHyperparameter("\(arch).attention.head_count_kv", "\(kvHeadCount)")
        }
        headDim = try gguf.int("\(arch).attention.key_length") ?? embeddingLength / headCount
        guard headDim > 0, headDim <= 256, headDim % 2 == 0 else {
            throw ModelError.invalidHyperparameter("\(arch).attention.key_length", "\(headDim)")
        }
        ropeDim = try gguf.int("\(arch).rope.dimension_count") ?? headDim
        guard ropeDim > 0, ropeDim <= headDim, ropeDim % 2 == 0 else {
            throw ModelError.invalidHyperparameter("\(arch).rope.dimension_count", "\(ropeDim)")
        }
        ropeFreqBase = Float(try gguf.double("\(arch).rope.freq_base") ?? 10000)
        ropeFreqScale = 1
        if let type = try gguf.string("\(arch).rope.scaling.type"), type == "linear",
           let factor = try gguf.double("\(arch).rope.scaling.factor"), factor > 0 {
            ropeFreqScale = Float(1 / factor)
        } else if let factor = try gguf.double("\(arch).rope.scale_linear"), factor > 0 {
            ropeFreqScale = Float(1 / factor)
        }
        ropeNeox = false
        rmsNormEps = Float(try gguf.double("\(arch).attention.layer_norm_rms_epsilon") ?? 1e-5)
        guard let emb = gguf.tensorInfo("token_embd.weight") else { throw GGUFError.missingTensor("token_embd.weight") }
        guard emb.shape.count == 2, emb.shape[0] == embeddingLength else {
            throw ModelError.invalidHyperparameter("token_embd.weight shape", "\(emb.shape)")
        }
        vocabularySize = emb.shape[1]
    }

    public var kvDim: Int { kvHeadCount * headDim }
    /// The most rows any gate/up matrix has (dense, expert or shared expert).
    public var widestFeedForward: Int {
        max(feedForwardLength, expertCount > 0 ? expertFeedForwardLength : 0, sharedExpertFeedForwardLength)
    }
    public var qDim: Int { headCount * headDim }
}

public enum ModelError: Error, CustomStringConvertible, Sendable {
    case unsupportedArchitecture(String, supported: [String])
    case invalidHyperparameter(String, String)
    case contextFull(needed: Int, capacity: Int)
    case invalidToken(Int, vocabularySize: Int)
    case batchTooLarge(tokens: Int, limit: Int)
    case invalidBatch(String)
    case storageMismatch
    case unsupportedFeature(String)
    /// An encoder asked to generate text, or a decoder asked for embeddings.
    case embeddingOnly(String)
    case generativeOnly(String)

    public var description: String {
        switch self {
        case .unsupportedArchitecture(let a, let s):
            "unsupported model architecture '\(a)' (supported: \(s.joined(separator: ", ")))"
        case .invalidHyperparameter(let k, let v): "invalid model hyper-parameter \(k) = \(v)"
        case .contextFull(let n, let c): "context full: \(n) positions needed, KV cache holds \(c)"
        case .invalidToken(let t, let v): "token id \(t) out of range (vocabulary size \(v))"
        case .batchTooLarge(let t, let l): "a forward batch of \(t) tokens exceeds the model's limit of \(l)"
        case .invalidBatch(let m): "invalid forward batch: \(m)"
        case .storageMismatch: "the KV storage was made for a different model shape"
        case .unsupportedFeature(let f): "the model uses \(f), which Swiftlet does not support yet"
        case .embeddingOnly(let a): "'\(a)' is an embedding model: it serves /v1/embeddings, not text generation"
        case .generativeOnly(let a): "'\(a)' is a text generation model; embeddings come from encoder models (bert)"
        }
    }
}

/// What a model file holds, for people choosing and pricing deployments: its parameters, and for a
/// mixture of experts the ones a token reads (shared weights plus `used` of `count` experts per layer).
public struct ModelFacts: Sendable, Equatable, Codable {
    public var architecture: String
    public var parameters: Int
    public var activeParameters: Int
    public var experts: Int
    public var expertsUsed: Int
    public var fileBytes: Int
    /// The weight type holding most of the file's bytes (e.g. "Q4_K").
    public var weightType: String

    public init(architecture: String, parameters: Int, activeParameters: Int, experts: Int, expertsUsed: Int,
                fileBytes: Int, weightType: String) {
        self.architecture = architecture
        self.parameters = parameters
        self.activeParameters = activeParameters
        self.experts = experts
        self.expertsUsed = expertsUsed
        self.fileBytes = fileBytes
        self.weightType = weightType
    }

    /// Counted from the tensors: expert tensors (`*_exps.*`, experts along their last axis) count in
    /// full towards `parameters` and `used / count` of them towards `activeParameters`.
    public init(gguf: GGUFFile, config: ModelConfig) {
        var total = 0, experts = 0
        var bytesByType: [String: Int] = [:]
        for t in gguf.tensors {
            total += t.elementCount
            if t.name.contains("_exps.") { experts += t.elementCount }
            bytesByType["\(t.type)", default: 0] += t.byteCount
        }
        let active = config.expertCount > 0 ? total - experts + experts / config.expertCount * config.expertUsedCount : total
        self.init(architecture: config.architecture, parameters: total, activeParameters: active,
                  experts: config.expertCount, expertsUsed: config.expertUsedCount, fileBytes: gguf.fileSize,
                  weightType: bytesByType.max { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }?.key ?? "")
    }

    enum CodingKeys: String, CodingKey {
        case architecture, parameters, experts
        case activeParameters = "active_parameters", expertsUsed = "experts_used", fileBytes = "file_bytes"
        case weightType = "weight_type"
    }
}
