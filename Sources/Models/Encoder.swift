import CKernels
import Foundation
import GGUF
import Kernels

/// How an encoder turns the states of a sequence's tokens into one vector (GGUF `pooling_type`).
public enum Pooling: Int, Sendable, CustomStringConvertible {
    case mean = 1, cls = 2, last = 3

    public var description: String {
        switch self {
        case .mean: "mean"
        case .cls: "cls"
        case .last: "last"
        }
    }
}

/// Models that map token sequences to vectors: no generation, no KV cache. A model is not reentrant:
/// callers serialize `embed`.
public protocol EmbeddingModel: AnyObject, Sendable {
    var config: ModelConfig { get }
    var pool: ThreadPool { get }
    var pooling: Pooling { get }
    /// Floats per embedding.
    var dimensions: Int { get }
    /// The most tokens one `embed` call takes, all sequences together.
    var maxBatchTokens: Int { get }
    /// Each sequence's pooled embedding (not normalised), `dimensions` floats each, into `out`. A
    /// sequence's vector does not depend on the others in the call.
    func embed(_ sequences: [[Int]], into out: UnsafeMutablePointer<Float>) throws
}

/// What an encoder architecture's file says: widths from the config, how it pools, and the parts that
/// differ between BERT and its kin.
public struct EncoderSpec: Sendable {
    public enum Positions: Sendable {
        /// Learned position embeddings added to the token's (BERT).
        case absolute
        /// Rotary embeddings of q and k (Nomic BERT).
        case rotary(RoPE)
    }

    public enum FeedForward: Sendable {
        /// down(gelu(up x)), GELU with erf (BERT).
        case gelu
        /// down(silu(gate x) * up x) (Nomic BERT).
        case swiglu
    }

    public var config: ModelConfig
    public var layerNormEps: Float
    public var pooling: Pooling
    public var positions: Positions = .absolute
    public var feedForward: FeedForward = .gelu
}

/// One post-norm encoder layer: x = norm(x + attention(x)); x = norm(x + ffn(x)).
struct EncoderLayer {
    let q, k, v, o: Linear
    let attentionNorm: LayerNorm
    let up, down: Linear
    /// SwiGLU's gate.
    let gate: Linear?
    let outputNorm: LayerNorm
}

/// The encoder of BERT and its kin: token (+ absolute position) (+ token type 0) embeddings and their
/// norm, layers of bidirectional attention (rotary for Nomic BERT) and GELU or SwiGLU feed-forwards, then pooling.
public final class EncoderModel: EmbeddingModel, @unchecked Sendable {
    public let config: ModelConfig
    public let pool: ThreadPool
    public let pooling: Pooling
    public let maxBatchTokens: Int
    let gguf: GGUFFile
    let tokenEmbedding: WeightMatrix
    let positionEmbedding: [Float]?
    let rope: RoPE?
    let tokenTypeEmbedding: [Float]?
    let embeddingNorm: LayerNorm
    let layers: [EncoderLayer]
    private let fusedQKV: [FusedMatmul?]
    private let buffers: Buffers
    private let lock = NSLock()

    public var dimensions: Int { config.embeddingLength }

    /// Scratch for `maxTokens` rows, allocated once.
    final class Buffers {
        let x, q, k, v, attn, tmp, ff, gate, scores: UnsafeMutablePointer<Float>
        let act: UnsafeMutableRawPointer
        let starts, lengths: UnsafeMutablePointer<Int32>
        let scoresPerThread: Int

        init(config c: ModelConfig, maxTokens: Int, threads: Int, activationBytes: Int, gated: Bool) {
            let e = c.embeddingLength * maxTokens
            func floats(_ n: Int) -> UnsafeMutablePointer<Float> {
                let p = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
                p.initialize(repeating: 0, count: max(n, 1))
                return p
            }
            x = floats(e); q = floats(e); k = floats(e); v = floats(e); attn = floats(e); tmp = floats(e)
            ff = floats(c.feedForwardLength * maxTokens)
            gate = floats(gated ? c.feedForwardLength * maxTokens : 0)
            scoresPerThread = c.contextLength + 8
            scores = floats(scoresPerThread * threads)
            act = UnsafeMutableRawPointer.allocate(byteCount: max(activationBytes * maxTokens, 64), alignment: 64)
            starts = .allocate(capacity: maxTokens)
            lengths = .allocate(capacity: maxTokens)
        }

        deinit {
            for p in [x, q, k, v, attn, tmp, ff, gate, scores] { p.deallocate() }
            act.deallocate()
            starts.deallocate()
            lengths.deallocate()
        }
    }

    public init(_ spec: EncoderSpec, gguf: GGUFFile, threads: Int, maxBatchTokens: Int? = nil) throws {
        let c = spec.config
        guard c.kvHeadCount == c.headCount, c.headDim * c.headCount == c.embeddingLength else {
            throw ModelError.invalidHyperparameter("attention heads", "\(c.headCount) heads of \(c.headDim) for width \(c.embeddingLength)")
        }
        config = c
        pooling = spec.pooling
        self.gguf = gguf
        self.maxBatchTokens = max(maxBatchTokens ?? 2048, c.contextLength)
        let e = c.embeddingLength, ff = c.feedForwardLength
        tokenEmbedding = try gguf.weightMatrix("token_embd.weight", columns: e, rows: c.vocabularySize)
        switch spec.positions {
        case .absolute:
            guard let pos = gguf.tensorInfo("position_embd.weight") else { throw GGUFError.missingTensor("position_embd.weight") }
            guard pos.shape.count == 2, pos.shape[0] == e, pos.shape[1] >= c.contextLength else {
                throw KernelError.shapeMismatch(tensor: "position_embd.weight", expected: [e, c.contextLength], found: pos.shape)
            }
            positionEmbedding = try gguf.floatVector("position_embd.weight")
            rope = nil
        case .rotary(let r):
            positionEmbedding = nil
            rope = r
        }
        if let types = gguf.tensorInfo("token_types.weight") {
            guard types.shape.count == 2, types.shape[0] == e else {
                throw KernelError.shapeMismatch(tensor: "token_types.weight", expected: [e, 2], found: types.shape)
            }
            tokenTypeEmbedding = Array(try gguf.floatVector("token_types.weight")[..<e])
        } else {
            tokenTypeEmbedding = nil
        }
        func norm(_ name: String) throws -> LayerNorm {
            LayerNorm(weight: try gguf.floatVector(name + ".weight", count: e), bias: try gguf.floatVector(name + ".bias", count: e),
                      eps: spec.layerNormEps)
        }
        embeddingNorm = try norm("token_embd_norm")
        var plain: [String: WeightMatrix] = [:]
        var biases: [String: [Float]] = [:]
        let gated = if case .swiglu = spec.feedForward { true } else { false }
        for i in 0..<c.layerCount {
            let p = "blk.\(i)."
            // q, k and v as separate tensors, or one fused (rows q, then k, then v), each with an optional bias.
            if gguf.tensorInfo(p + "attn_qkv.weight") != nil {
                let whole = try gguf.weightMatrix(p + "attn_qkv.weight", columns: e, rows: 3 * e)
                let bias = gguf.tensorInfo(p + "attn_qkv.bias") != nil ? try gguf.floatVector(p + "attn_qkv.bias", count: 3 * e) : nil
                for (j, name) in ["attn_q", "attn_k", "attn_v"].enumerated() {
                    plain[p + name] = try whole.rows(j * e..<(j + 1) * e)
                    biases[p + name] = bias.map { Array($0[j * e..<(j + 1) * e]) }
                }
            } else {
                for name in ["attn_q", "attn_k", "attn_v"] {
                    plain[p + name] = try gguf.weightMatrix(p + name + ".weight", columns: e, rows: e)
                }
            }
            plain[p + "attn_output"] = try gguf.weightMatrix(p + "attn_output.weight", columns: e, rows: e)
            plain[p + "ffn_up"] = try gguf.weightMatrix(p + "ffn_up.weight", columns: e, rows: ff)
            if gated { plain[p + "ffn_gate"] = try gguf.weightMatrix(p + "ffn_gate.weight", columns: e, rows: ff) }
            plain[p + "ffn_down"] = try gguf.weightMatrix(p + "ffn_down.weight", columns: ff, rows: e)
        }
        let packable = plain.values.filter(\.isPackable)
        let storage = packable.isEmpty ? nil : PackedStorage(capacity: packable.reduce(0) { $0 + $1.packedByteCount })
        let panelable = plain.values.map { $0.withFloatActivations() }.filter(\.isPanelable)
        let panels = panelable.isEmpty ? nil : PackedStorage(capacity: panelable.reduce(0) { $0 + $1.panelByteCount })
        func linear(_ name: String, rows: Int) throws -> Linear {
            var m = plain[name]!.withFloatActivations()
            if let panels, m.isPanelable {
                let repacked = m.floatPanels(into: panels)
                gguf.releasePages(m.data, byteCount: m.rows * m.rowStride)
                m = repacked
            } else if let storage, m.isPackable {
                let packed = m.packed(into: storage)
                gguf.releasePages(m.data, byteCount: m.rows * m.rowStride)
                m = packed
            }
            let bias = try biases[name] ?? (gguf.tensorInfo(name + ".bias") != nil ? gguf.floatVector(name + ".bias", count: rows) : nil)
            return Linear(weight: m, bias: bias)
        }
        layers = try (0..<c.layerCount).map { i in
            let p = "blk.\(i)."
            return EncoderLayer(
                q: try linear(p + "attn_q", rows: e), k: try linear(p + "attn_k", rows: e), v: try linear(p + "attn_v", rows: e),
                o: try linear(p + "attn_output", rows: e), attentionNorm: try norm(p + "attn_output_norm"),
                up: try linear(p + "ffn_up", rows: ff), down: try linear(p + "ffn_down", rows: e),
                gate: gated ? try linear(p + "ffn_gate", rows: ff) : nil, outputNorm: try norm(p + "layer_output_norm"))
        }
        pool = ThreadPool(threads: threads)
        let activationBytes = layers.flatMap { [$0.q.weight, $0.o.weight, $0.up.weight, $0.down.weight] }
            .map(\.activationRowBytes).max() ?? 0
        let buffers = Buffers(config: c, maxTokens: self.maxBatchTokens, threads: pool.threadCount, activationBytes: activationBytes,
                              gated: gated)
        self.buffers = buffers
        fusedQKV = layers.map { l in
            FusedMatmul([l.q.weight, l.k.weight, l.v.weight], outputs: [buffers.q, buffers.k, buffers.v], ldys: [e, e, e])
        }
    }

    public func embed(_ sequences: [[Int]], into out: UnsafeMutablePointer<Float>) throws {
        let total = sequences.reduce(0) { $0 + $1.count }
        guard total <= maxBatchTokens else { throw ModelError.batchTooLarge(tokens: total, limit: maxBatchTokens) }
        for s in sequences {
            guard !s.isEmpty, s.count <= config.contextLength else {
                throw ModelError.invalidBatch("a sequence has \(s.count) tokens; 1 to \(config.contextLength) fit")
            }
            for t in s where !(0..<config.vocabularySize).contains(t) {
                throw ModelError.invalidToken(t, vocabularySize: config.vocabularySize)
            }
        }
        guard total > 0 else { return }
        lock.lock()
        defer { lock.unlock() }
        let b = buffers, e = config.embeddingLength, ff = config.feedForwardLength
        var row = 0
        for (i, s) in sequences.enumerated() {
            b.starts[i] = Int32(row)
            b.lengths[i] = Int32(s.count)
            for (p, t) in s.enumerated() {
                let x = b.x + row * e
                tokenEmbedding.dequantizeRow(t, into: x)
                positionEmbedding?.withUnsafeBufferPointer { Ops.add(x, $0.baseAddress! + p * e, count: e) }
                tokenTypeEmbedding?.withUnsafeBufferPointer { Ops.add(x, $0.baseAddress!, count: e) }
                row += 1
            }
        }
        embeddingNorm(pool, b.x, out: b.x, rows: total, ld: e)
        let scale = 1 / Float(config.headDim).squareRoot()
        let pool = pool
        /// The activations of `w`'s product: f32 rows already in the layout it reads are taken where they are.
        func input(_ w: WeightMatrix, _ x: UnsafeMutablePointer<Float>, ld: Int) -> UnsafeRawPointer {
            if w.activationType == Int32(GGMLType.f32.rawValue), w.activationRowBytes == ld * 4 { return UnsafeRawPointer(x) }
            Ops.quantizeActivations(pool, for: w, x: x, ldx: ld, count: total, out: b.act)
            return UnsafeRawPointer(b.act)
        }
        for (l, layer) in layers.enumerated() {
            let xq = input(layer.q.weight, b.x, ld: e)
            if let fused = fusedQKV[l] {
                fused.run(pool, quantized: xq, count: total)
                layer.q.addBias(pool, b.q, count: total, ld: e)
                layer.k.addBias(pool, b.k, count: total, ld: e)
                layer.v.addBias(pool, b.v, count: total, ld: e)
            } else {
                layer.q(pool, quantized: xq, count: total, y: b.q, ldy: e)
                layer.k(pool, quantized: xq, count: total, y: b.k, ldy: e)
                layer.v(pool, quantized: xq, count: total, y: b.v, ldy: e)
            }
            if let rope {
                for (i, s) in sequences.enumerated() {
                    let first = Int(b.starts[i])
                    for p in 0..<s.count {
                        Ops.rope(b.q + (first + p) * e, heads: config.headCount, headDim: config.headDim, ropeDim: rope.dimensions,
                                 position: p, freqBase: rope.base, freqScale: rope.scale, freqFactors: nil, neox: rope.neox)
                        Ops.rope(b.k + (first + p) * e, heads: config.headCount, headDim: config.headDim, ropeDim: rope.dimensions,
                                 position: p, freqBase: rope.base, freqScale: rope.scale, freqFactors: nil, neox: rope.neox)
                    }
                }
            }
            Ops.denseAttention(pool, q: b.q, k: b.k, v: b.v, ld: e, out: b.attn, ldo: e, starts: b.starts, lengths: b.lengths,
                               sequences: sequences.count, heads: config.headCount, headDim: config.headDim, scale: scale,
                               scratch: b.scores, scratchPerThread: b.scoresPerThread)
            layer.o(pool, quantized: input(layer.o.weight, b.attn, ld: e), count: total, y: b.tmp, ldy: e)
            Ops.add(pool, b.x, b.tmp, rows: total, count: e)
            layer.attentionNorm(pool, b.x, out: b.x, rows: total, ld: e)
            let xu = input(layer.up.weight, b.x, ld: e)
            layer.up(pool, quantized: xu, count: total, y: b.ff, ldy: ff)
            if let gate = layer.gate {
                let same = gate.weight.activationType == layer.up.weight.activationType
                    && gate.weight.activationRowBytes == layer.up.weight.activationRowBytes
                gate(pool, quantized: same ? xu : input(gate.weight, b.x, ld: e), count: total, y: b.gate, ldy: ff)
                Ops.swiglu(pool, gate: b.gate, up: b.ff, out: b.ff, rows: total, count: ff)
            } else {
                Ops.gelu(pool, b.ff, rows: total, count: ff)
            }
            layer.down(pool, quantized: input(layer.down.weight, b.ff, ld: ff), count: total, y: b.tmp, ldy: e)
            Ops.add(pool, b.x, b.tmp, rows: total, count: e)
            layer.outputNorm(pool, b.x, out: b.x, rows: total, ld: e)
        }
        for (i, s) in sequences.enumerated() {
            let first = b.x + Int(b.starts[i]) * e, o = out + i * e
            switch pooling {
            case .cls: o.update(from: first, count: e)
            case .last: o.update(from: first + (s.count - 1) * e, count: e)
            case .mean:
                for d in 0..<e {
                    var sum = 0.0
                    for r in 0..<s.count { sum += Double(first[r * e + d]) }
                    o[d] = Float(sum / Double(s.count))
                }
            }
        }
    }
}
