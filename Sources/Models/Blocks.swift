import CKernels
import GGUF
import Kernels

/// A weight matrix with an optional bias, applied to quantized activations.
struct Linear {
    let weight: WeightMatrix
    let bias: [Float]?

    /// y = W x (+ b) for `count` rows of activations already quantized for `weight`.
    func callAsFunction(_ pool: ThreadPool, quantized: UnsafeRawPointer, count: Int, y: UnsafeMutablePointer<Float>, ldy: Int) {
        Ops.matmul(pool, weight, quantized: quantized, count: count, y: y, ldy: ldy)
        addBias(pool, y, count: count, ld: ldy)
    }

    /// The bias added to `count` rows `ld` floats apart, rows shared out on the pool.
    func addBias(_ pool: ThreadPool, _ y: UnsafeMutablePointer<Float>, count: Int, ld: Int) {
        guard let bias else { return }
        bias.withUnsafeBufferPointer { b in
            pool.forEach(count) { i, _ in Ops.add(y + i * ld, b.baseAddress!, count: b.count) }
        }
    }
}

/// RMSNorm over rows of `weight.count` elements.
struct RMSNorm {
    let weight: [Float]
    let eps: Float

    /// `rows` rows `ld` floats apart; `out` may be `x`.
    func callAsFunction(_ pool: ThreadPool, _ x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, rows: Int, ld: Int) {
        weight.withUnsafeBufferPointer { w in
            Ops.rmsNorm(pool, x, weight: w.baseAddress!, out: out, rows: rows, ld: ld, count: w.count, eps: eps)
        }
    }
}

/// LayerNorm with a bias (encoders) over rows of `weight.count` elements.
struct LayerNorm {
    let weight: [Float]
    let bias: [Float]
    let eps: Float

    func callAsFunction(_ pool: ThreadPool, _ x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, rows: Int, ld: Int) {
        weight.withUnsafeBufferPointer { w in
            bias.withUnsafeBufferPointer { b in
                Ops.layerNorm(pool, x, weight: w.baseAddress!, bias: b.baseAddress!, out: out, rows: rows, ld: ld,
                              count: w.count, eps: eps)
            }
        }
    }
}

/// Rotary embedding of one layer: its base frequency, and what every layer shares.
public struct RoPE: Sendable, Equatable {
    public var dimensions: Int
    public var base: Float
    public var scale: Float = 1
    /// Rotate the halves (i, i + d/2) of each head (GPT-NeoX, Qwen, Gemma, Phi-3) rather than adjacent pairs.
    public var neox: Bool
}

/// Grouped-query self-attention over the paged KV cache, with an optional RMSNorm of q and k, per head
/// (Gemma 3, Qwen 3) or over the whole projection (OLMoE), and an optional sliding window (0: the whole context).
struct Attention {
    let q, k, v, o: Linear
    let qNorm, kNorm: RMSNorm?
    let rope: RoPE
    let window: Int
}

/// Gated feed-forward: down(act(gate x) * up x), SiLU (SwiGLU) or GELU (GeGLU).
struct FeedForward {
    let gate, up, down: WeightMatrix
    let activation: DecoderSpec.Activation

    func activate(_ pool: ThreadPool, gate g: UnsafeMutablePointer<Float>, up u: UnsafePointer<Float>, rows: Int) {
        switch activation {
        case .silu: Ops.swiglu(pool, gate: g, up: u, out: g, rows: rows, count: gate.rows)
        case .gelu: Ops.geglu(pool, gate: g, up: u, out: g, rows: rows, count: gate.rows)
        }
    }
}

/// Mixture of experts (Mixtral): a router picks `used` of the experts for each token (softmax, top-k,
/// weights renormalised) and the token's output is their gated feed-forwards' weighted sum, in the
/// order picked. Each expert runs once per step over the rows routed to it.
struct MixtureOfExperts {
    let router: WeightMatrix
    let experts: [FeedForward]
    let used: Int
    /// Renormalise the picked experts' weights to sum 1 (all but Qwen 2 MoE).
    let normalize: Bool
    /// Qwen 2 MoE: a shared expert every token runs, weighted by sigmoid(x . sharedGate).
    let shared: FeedForward?
    let sharedGate: [Float]?
}

/// A layer's feed-forward: one for every token, or a mixture of experts.
enum FeedForwardBlock {
    case dense(FeedForward)
    case experts(MixtureOfExperts)
}

/// One pre-norm decoder layer: x += [postNorm](attention(norm x)); x += [postNorm](ffn(norm x)).
struct DecoderLayer {
    let attentionNorm: RMSNorm
    let attention: Attention
    let postAttentionNorm: RMSNorm?
    let feedForwardNorm: RMSNorm
    let feedForward: FeedForwardBlock
    let postFeedForwardNorm: RMSNorm?
}

/// What an architecture's file says about its decoder: the parts the shared decoder composes, per layer.
public struct DecoderSpec: Sendable {
    public var config: ModelConfig
    /// Each layer's RoPE and sliding window (0: global attention).
    public var layerRoPE: [RoPE]
    public var layerWindow: [Int]
    public var activation: Activation = .silu
    /// The token embeddings are multiplied by this (Gemma: sqrt of the embedding width).
    public var embeddingScale: Float?
    /// Scores are q·k times this; by default 1/sqrt(head width).
    public var attentionScale: Float
    /// Tensor layouts: Q, K and V in one `attn_qkv` tensor; gate and up stacked in `ffn_up` (Phi-3).
    public var fusedQKV = false
    public var fusedGateUp = false
    /// Mixture of experts: renormalise the picked experts' weights to sum 1.
    public var normalizeExpertWeights = true

    public enum Activation: Sendable { case silu, gelu }

    /// Every layer global with the config's RoPE.
    public init(config: ModelConfig) {
        self.config = config
        let rope = RoPE(dimensions: config.ropeDim, base: config.ropeFreqBase, scale: config.ropeFreqScale,
                        neox: config.ropeNeox)
        layerRoPE = Array(repeating: rope, count: config.layerCount)
        layerWindow = Array(repeating: 0, count: config.layerCount)
        attentionScale = 1 / Float(config.headDim).squareRoot()
    }

    /// The `{arch}.attention.sliding_window` metadata, checked.
    static func slidingWindow(_ gguf: GGUFFile, _ arch: String) throws -> Int? {
        guard let w = try gguf.int("\(arch).attention.sliding_window") else { return nil }
        guard w > 0, w < 1 << 24 else { throw ModelError.invalidHyperparameter("\(arch).attention.sliding_window", "\(w)") }
        return w
    }
}
