import CKernels
import Foundation
import GGUF
import Kernels

/// The decoder every architecture composes: token embedding (optionally scaled), layers of
/// pre-norm attention and feed-forward blocks (`DecoderLayer`), final norm, output head. An
/// architecture's file only reads its config and says which parts it uses (`DecoderSpec`).
public final class DecoderModel: LanguageModel, @unchecked Sendable {
    public let config: ModelConfig
    public let spec: DecoderSpec
    let gguf: GGUFFile
    public let pool: ThreadPool
    let layers: [DecoderLayer]
    let tokenEmbedding: WeightMatrix
    let outputNorm: RMSNorm
    let output: WeightMatrix
    let ropeFreqFactors: [Float]?
    /// Tokens per internal forward chunk: bounds scratch memory for long prompts.
    let maxChunk: Int
    private var scratch: Scratch
    /// Per layer: Q/K/V and gate/up as single dispatches into the scratch buffers (nil if not fusable).
    private let fused: [(qkv: FusedMatmul?, gateUp: FusedMatmul?)]
    /// Per layer with experts: each expert's gate and up as one dispatch (and the shared expert's, last).
    private let expertFused: [[FusedMatmul?]]
    private let lock = NSLock()

    /// `packWeights`: copy the matrices into the kernels' interleaved layout (faster, same results)
    /// and drop their mapped pages, so resident memory stays about the model's size.
    public init(_ spec: DecoderSpec, gguf: GGUFFile, threads: Int, maxChunk: Int = 512, packWeights: Bool = true) throws {
        let c = spec.config
        guard spec.layerRoPE.count == c.layerCount, spec.layerWindow.count == c.layerCount else {
            throw ModelError.invalidHyperparameter("per-layer RoPE and windows", "\(spec.layerRoPE.count) for \(c.layerCount) layers")
        }
        self.config = c
        self.spec = spec
        self.gguf = gguf
        self.maxChunk = maxChunk
        // Embedding lookups read single rows of the mapped file; only the output head is packed.
        tokenEmbedding = try gguf.weightMatrix("token_embd.weight", columns: c.embeddingLength, rows: c.vocabularySize)
        outputNorm = RMSNorm(weight: try gguf.floatVector("output_norm.weight", count: c.embeddingLength), eps: c.rmsNormEps)
        // Sized first so that all packed matrices share one storage.
        var plain: [String: WeightMatrix] = [:]
        func load(_ name: String, columns: Int, rows: Int) throws {
            plain[name] = try gguf.weightMatrix(name, columns: columns, rows: rows)
        }
        /// A fused tensor's consecutive row ranges, as matrices named `name#i`.
        func split(_ name: String, columns: Int, rows: [Int]) throws {
            let whole = try gguf.weightMatrix(name, columns: columns, rows: rows.reduce(0, +))
            var first = 0
            for (i, r) in rows.enumerated() {
                plain["\(name)#\(i)"] = try whole.rows(first..<first + r)
                first += r
            }
        }
        /// A 3-D expert tensor [columns, rows, experts] as one matrix per expert, named `name#e`.
        func splitExperts(_ name: String, columns: Int, rows: Int) throws {
            guard let info = gguf.tensorInfo(name) else { throw GGUFError.missingTensor(name) }
            guard info.shape == [columns, rows, c.expertCount] else {
                throw KernelError.shapeMismatch(tensor: name, expected: [columns, rows, c.expertCount], found: info.shape)
            }
            let whole = try gguf.weightMatrix(name)
            for e in 0..<c.expertCount { plain["\(name)#\(e)"] = try whole.rows(e * rows..<(e + 1) * rows) }
        }
        let outputName = gguf.tensorInfo("output.weight") != nil ? "output.weight" : "token_embd.weight"
        try load(outputName, columns: c.embeddingLength, rows: c.vocabularySize)
        let qkvNames = spec.fusedQKV ? ["attn_qkv.weight#0", "attn_qkv.weight#1", "attn_qkv.weight#2"]
            : ["attn_q.weight", "attn_k.weight", "attn_v.weight"]
        let gateUpNames = spec.fusedGateUp ? ["ffn_up.weight#0", "ffn_up.weight#1"] : ["ffn_gate.weight", "ffn_up.weight"]
        for i in 0..<c.layerCount {
            let p = "blk.\(i)."
            if spec.fusedQKV {
                try split(p + "attn_qkv.weight", columns: c.embeddingLength, rows: [c.qDim, c.kvDim, c.kvDim])
            } else {
                try load(p + qkvNames[0], columns: c.embeddingLength, rows: c.qDim)
                try load(p + qkvNames[1], columns: c.embeddingLength, rows: c.kvDim)
                try load(p + qkvNames[2], columns: c.embeddingLength, rows: c.kvDim)
            }
            try load(p + "attn_output.weight", columns: c.qDim, rows: c.embeddingLength)
            if c.expertCount > 0 {
                try load(p + "ffn_gate_inp.weight", columns: c.embeddingLength, rows: c.expertCount)
                let eff = c.expertFeedForwardLength, sff = c.sharedExpertFeedForwardLength
                try splitExperts(p + "ffn_gate_exps.weight", columns: c.embeddingLength, rows: eff)
                try splitExperts(p + "ffn_up_exps.weight", columns: c.embeddingLength, rows: eff)
                try splitExperts(p + "ffn_down_exps.weight", columns: eff, rows: c.embeddingLength)
                if sff > 0 {
                    try load(p + "ffn_gate_shexp.weight", columns: c.embeddingLength, rows: sff)
                    try load(p + "ffn_up_shexp.weight", columns: c.embeddingLength, rows: sff)
                    try load(p + "ffn_down_shexp.weight", columns: sff, rows: c.embeddingLength)
                }
                continue
            }
            if spec.fusedGateUp {
                try split(p + "ffn_up.weight", columns: c.embeddingLength, rows: [c.feedForwardLength, c.feedForwardLength])
            } else {
                try load(p + gateUpNames[0], columns: c.embeddingLength, rows: c.feedForwardLength)
                try load(p + gateUpNames[1], columns: c.embeddingLength, rows: c.feedForwardLength)
            }
            try load(p + "ffn_down.weight", columns: c.feedForwardLength, rows: c.embeddingLength)
        }
        let packable = packWeights ? plain.values.filter(\.isPackable) : []
        let storage = packable.isEmpty ? nil : PackedStorage(capacity: packable.reduce(0) { $0 + $1.packedByteCount })
        func matrix(_ name: String) -> WeightMatrix {
            let m = plain[name]!
            guard let storage, m.isPackable else { return m }
            let p = m.packed(into: storage)
            gguf.releasePages(m.data, byteCount: m.rows * m.rowStride)
            return p
        }
        output = matrix(outputName)
        ropeFreqFactors = gguf.tensorInfo("rope_freqs.weight") != nil
            ? try gguf.floatVector("rope_freqs.weight", count: c.ropeDim / 2) : nil

        func optionalVector(_ name: String, _ n: Int) throws -> [Float]? {
            gguf.tensorInfo(name) == nil ? nil : try gguf.floatVector(name, count: n)
        }
        func norm(_ name: String, _ n: Int) throws -> RMSNorm {
            RMSNorm(weight: try gguf.floatVector(name, count: n), eps: c.rmsNormEps)
        }
        func optionalNorm(_ name: String, _ n: Int) throws -> RMSNorm? {
            try optionalVector(name, n).map { RMSNorm(weight: $0, eps: c.rmsNormEps) }
        }
        /// A q or k norm: per head (Qwen 3, Gemma 3) or over the whole projection of `width` (OLMoE).
        func projectionNorm(_ name: String, width: Int) throws -> RMSNorm? {
            guard let info = gguf.tensorInfo(name) else { return nil }
            return try optionalNorm(name, info.elementCount == width ? width : c.headDim)
        }
        var layers: [DecoderLayer] = []
        for i in 0..<c.layerCount {
            let p = "blk.\(i)."
            var qkvBias: [[Float]?] = [nil, nil, nil]
            if spec.fusedQKV {
                if let b = try optionalVector(p + "attn_qkv.bias", c.qDim + 2 * c.kvDim) {
                    qkvBias = [Array(b[..<c.qDim]), Array(b[c.qDim..<(c.qDim + c.kvDim)]), Array(b[(c.qDim + c.kvDim)...])]
                }
            } else {
                qkvBias = [try optionalVector(p + "attn_q.bias", c.qDim), try optionalVector(p + "attn_k.bias", c.kvDim),
                           try optionalVector(p + "attn_v.bias", c.kvDim)]
            }
            let attention = Attention(
                q: Linear(weight: matrix(p + qkvNames[0]), bias: qkvBias[0]),
                k: Linear(weight: matrix(p + qkvNames[1]), bias: qkvBias[1]),
                v: Linear(weight: matrix(p + qkvNames[2]), bias: qkvBias[2]),
                o: Linear(weight: matrix(p + "attn_output.weight"),
                          bias: try optionalVector(p + "attn_output.bias", c.embeddingLength)),
                qNorm: try projectionNorm(p + "attn_q_norm.weight", width: c.qDim),
                kNorm: try projectionNorm(p + "attn_k_norm.weight", width: c.kvDim),
                rope: spec.layerRoPE[i], window: spec.layerWindow[i])
            let ffn: FeedForwardBlock = c.expertCount > 0
                ? .experts(MixtureOfExperts(
                    router: matrix(p + "ffn_gate_inp.weight"),
                    experts: (0..<c.expertCount).map { e in
                        FeedForward(gate: matrix(p + "ffn_gate_exps.weight#\(e)"), up: matrix(p + "ffn_up_exps.weight#\(e)"),
                                    down: matrix(p + "ffn_down_exps.weight#\(e)"), activation: spec.activation)
                    },
                    used: c.expertUsedCount, normalize: spec.normalizeExpertWeights,
                    shared: c.sharedExpertFeedForwardLength > 0
                        ? FeedForward(gate: matrix(p + "ffn_gate_shexp.weight"), up: matrix(p + "ffn_up_shexp.weight"),
                                      down: matrix(p + "ffn_down_shexp.weight"), activation: spec.activation) : nil,
                    sharedGate: c.sharedExpertFeedForwardLength > 0
                        ? try gguf.floatVector(p + "ffn_gate_inp_shexp.weight", count: c.embeddingLength) : nil))
                : .dense(FeedForward(
                    gate: matrix(p + gateUpNames[0]), up: matrix(p + gateUpNames[1]), down: matrix(p + "ffn_down.weight"),
                    activation: spec.activation))
            layers.append(DecoderLayer(
                attentionNorm: try norm(p + "attn_norm.weight", c.embeddingLength),
                attention: attention,
                postAttentionNorm: try optionalNorm(p + "post_attention_norm.weight", c.embeddingLength),
                feedForwardNorm: try norm(p + "ffn_norm.weight", c.embeddingLength),
                feedForward: ffn,
                postFeedForwardNorm: try optionalNorm(p + "post_ffw_norm.weight", c.embeddingLength)))
        }
        self.layers = layers
        pool = ThreadPool(threads: threads)
        let inputs = layers.flatMap { l -> [WeightMatrix] in
            let ffn: [WeightMatrix] = switch l.feedForward {
            case .dense(let f): [f.gate, f.down]
            case .experts(let m): [m.router] + (m.experts + (m.shared.map { [$0] } ?? [])).flatMap { [$0.gate, $0.down] }
            }
            return [l.attention.q.weight, l.attention.o.weight] + ffn
        }
        let activationBytes = max((inputs + [output]).map(\.activationRowBytes).max()!, c.widestFeedForward * 4)
        let scratch = Scratch(config: c, maxTokens: maxChunk, threads: pool.threadCount, activationBytes: activationBytes)
        self.scratch = scratch
        fused = layers.map { l in
            let a = l.attention
            var gateUp: FusedMatmul?
            if case .dense(let f) = l.feedForward {
                gateUp = FusedMatmul([f.gate, f.up], outputs: [scratch.gate, scratch.up],
                                     ldys: [c.feedForwardLength, c.feedForwardLength])
            }
            return (FusedMatmul([a.q.weight, a.k.weight, a.v.weight], outputs: [scratch.q, scratch.k, scratch.v],
                                ldys: [c.qDim, c.kvDim, c.kvDim]), gateUp)
        }
        expertFused = layers.map { l in
            guard case .experts(let m) = l.feedForward else { return [] }
            return (m.experts + (m.shared.map { [$0] } ?? [])).map { f in
                FusedMatmul([f.gate, f.up], outputs: [scratch.gate, scratch.up], ldys: [f.gate.rows, f.up.rows])
            }
        }
    }

    public func makeCache(capacity: Int) -> KVCache {
        KVCache(layers: config.layerCount, capacity: min(capacity, config.contextLength), kvDim: config.kvDim)
    }

    public func makeStorage(blocks: Int, blockSize: Int) -> KVBlockStorage {
        KVBlockStorage(layers: config.layerCount, blocks: blocks, blockSize: blockSize, kvDim: config.kvDim)
    }

    public var slidingWindow: Int? { spec.layerWindow.max().flatMap { $0 > 0 ? $0 : nil } }
    public var slidingLayerCount: Int { spec.layerWindow.filter { $0 > 0 }.count }

    /// Read without the model's lock (the counters are atomic), so a scrape never waits for a forward pass.
    public func expertRouting() -> [Int] {
        (0..<config.expertCount).map { Int(ck_counter_load(scratch.expertTokens + $0)) }
    }

    public func makeStorage(blocks: Int, slidingBlocks: Int, blockSize: Int) -> KVBlockStorage {
        guard slidingWindow != nil else { return makeStorage(blocks: blocks, blockSize: blockSize) }
        return KVBlockStorage(layers: config.layerCount, blocks: blocks, blockSize: blockSize, kvDim: config.kvDim,
                              sliding: spec.layerWindow.map { $0 > 0 }, slidingBlocks: slidingBlocks)
    }

    public var maxBatchTokens: Int { maxChunk }

    @discardableResult
    public func forward(tokens: [Int], cache: KVCache, logits: LogitsRequest, into out: inout [Float]) throws -> Int {
        guard cache.count + tokens.count <= cache.capacity else {
            throw ModelError.contextFull(needed: cache.count + tokens.count, capacity: cache.capacity)
        }
        try checkTokens(tokens)
        let rows = switch logits {
        case .none: 0
        case .last: tokens.isEmpty ? 0 : 1
        case .all: tokens.count
        }
        let vocab = config.vocabularySize
        if out.count < rows * vocab { out = [Float](repeating: 0, count: rows * vocab) }
        lock.lock()
        defer { lock.unlock() }
        var start = 0
        var written = 0
        while start < tokens.count {
            let n = min(maxChunk, tokens.count - start)
            let want: Int = switch logits {
            case .none: 0
            case .last: start + n == tokens.count ? 1 : 0
            case .all: n
            }
            let seq = BatchSequence(tokenCount: n, startPosition: cache.count, blockTable: cache.blockTable, logitCount: want)
            try out.withUnsafeMutableBufferPointer { buf in
                try tokens.withUnsafeBufferPointer { tk in
                    try forwardChunk(
                        tokens: UnsafeBufferPointer(rebasing: tk[start..<start + n]), sequences: CollectionOfOne(seq),
                        storage: cache.storage, logitsOut: buf.baseAddress! + written * vocab, hiddenOut: nil)
                }
            }
            cache.count += n
            written += want
            start += n
        }
        return written
    }

    public func forward(_ batch: ForwardBatch, storage: KVBlockStorage, logits: UnsafeMutablePointer<Float>,
                        hidden: UnsafeMutablePointer<Float>?) throws {
        guard batch.tokens.count <= maxChunk else {
            throw ModelError.batchTooLarge(tokens: batch.tokens.count, limit: maxChunk)
        }
        guard storage.layers == config.layerCount, storage.kvDim == config.kvDim,
              !storage.isSplit || storage.sliding == spec.layerWindow.map({ $0 > 0 }) else {
            throw ModelError.storageMismatch
        }
        guard batch.sequences.reduce(0, { $0 + $1.tokenCount }) == batch.tokens.count else {
            throw ModelError.invalidBatch("sequence token counts do not add up to the batch's tokens")
        }
        try checkTokens(batch.tokens)
        for sq in batch.sequences {
            guard sq.tokenCount > 0, sq.startPosition >= 0, (0...(sq.hidden ? 1 : sq.tokenCount)).contains(sq.logitCount),
                  sq.startPosition + sq.tokenCount <= sq.blockTable.count * storage.blockSize,
                  sq.blockTable.allSatisfy({ $0 >= 0 && Int($0) < storage.blockCount }) else {
                throw ModelError.invalidBatch("a sequence's block table does not cover its positions")
            }
            if storage.isSplit, let window = slidingWindow {
                // The blocks its rows' windows read: positions from start - window + 1 to its last.
                let bs = storage.blockSize, table = sq.slidingBlockTable
                let first = max(0, sq.startPosition - window + 1) / bs, last = (sq.startPosition + sq.tokenCount - 1) / bs
                guard last < table.count, table[first...last].allSatisfy({ $0 >= 0 && Int($0) < storage.slidingBlockCount }) else {
                    throw ModelError.invalidBatch("a sequence's sliding-window block table does not cover its window")
                }
            }
        }
        guard batch.hiddenRows == 0 || hidden != nil else { throw ModelError.invalidBatch("hidden rows without a buffer for them") }
        lock.lock()
        defer { lock.unlock() }
        try batch.tokens.withUnsafeBufferPointer { tk in
            try forwardChunk(tokens: tk, sequences: batch.sequences, storage: storage, logitsOut: logits, hiddenOut: hidden)
        }
    }

    private func checkTokens(_ tokens: [Int]) throws {
        for t in tokens where t < 0 || t >= config.vocabularySize {
            throw ModelError.invalidToken(t, vocabularySize: config.vocabularySize)
        }
    }

    /// At most `maxChunk` tokens of one or more sequences (consecutive in `tokens`). Writes logits for
    /// the last `logitCount` tokens of each sequence (the final-normed hidden state to `hiddenOut` for `hidden` ones).
    private func forwardChunk<S: Collection<BatchSequence>>(
        tokens: UnsafeBufferPointer<Int>, sequences: S, storage: KVBlockStorage, logitsOut: UnsafeMutablePointer<Float>,
        hiddenOut: UnsafeMutablePointer<Float>?
    ) throws {
        let c = config
        let n = tokens.count
        let dim = c.embeddingLength, kvDim = c.kvDim, qDim = c.qDim, ff = c.feedForwardLength
        let s = scratch
        let x = s.x, xn = s.xn, q = s.q, k = s.k, v = s.v, att = s.att, tmp = s.tmp, gate = s.gate, up = s.up
        let quant = s.quant

        // Per row: its position and KV slot offsets; per sequence: the attention descriptors (with split
        // storage, a second set for the sliding-window layers' blocks).
        let split = storage.isSplit
        var longest = 0
        s.prepare(sequences: 2 * sequences.count,
                  tableEntries: sequences.reduce(0) { $0 + $1.blockTable.count + (split ? $1.slidingBlockTable.count : 0) })
        var row = 0, tableOffset = 0
        for (i, sq) in sequences.enumerated() {
            let table = s.tables + tableOffset
            sq.blockTable.withUnsafeBufferPointer { table.update(from: $0.baseAddress!, count: $0.count) }
            tableOffset += sq.blockTable.count
            let slidingTable = s.tables + tableOffset
            if split {
                sq.slidingBlockTable.withUnsafeBufferPointer { slidingTable.update(from: $0.baseAddress!, count: $0.count) }
                tableOffset += sq.slidingBlockTable.count
            }
            for j in 0..<sq.tokenCount {
                let pos = sq.startPosition + j
                s.positions[row + j] = Int32(pos)
                s.slots[row + j] = storage.slot(table, pos)
                if split { s.slidingSlots[row + j] = storage.slot(slidingTable, pos) }
            }
            s.attentionSequences[i] = ck_attn_seq(
                n_q: Int32(sq.tokenCount), row0: Int32(row), pos0: Int32(sq.startPosition), blocks: table)
            s.attentionSequences[sequences.count + i] = ck_attn_seq(
                n_q: Int32(sq.tokenCount), row0: Int32(row), pos0: Int32(sq.startPosition), blocks: split ? slidingTable : table)
            longest = max(longest, sq.startPosition + sq.tokenCount)
            row += sq.tokenCount
        }
        s.ensureAttentionCapacity(longest, threads: pool.threadCount, headDim: c.headDim)

        for (i, t) in tokens.enumerated() { tokenEmbedding.dequantizeRow(t, into: x + i * dim) }
        if let e = spec.embeddingScale {
            for i in 0..<(n * dim) { x[i] *= e }
        }

        for (layer, l) in layers.enumerated() {
            let a = l.attention
            l.attentionNorm(pool, x, out: xn, rows: n, ld: dim)
            Ops.quantizeActivations(pool, for: a.q.weight, x: xn, ldx: dim, count: n, out: quant)
            if let qkv = fused[layer].qkv {
                qkv.run(pool, quantized: quant, count: n)
                Ops.prefetch(pool, a.o.weight)
                a.q.addBias(pool, q, count: n, ld: qDim)
                a.k.addBias(pool, k, count: n, ld: kvDim)
                a.v.addBias(pool, v, count: n, ld: kvDim)
            } else {
                a.q(pool, quantized: quant, count: n, y: q, ldy: qDim)
                Ops.quantizeActivations(pool, for: a.k.weight, x: xn, ldx: dim, count: n, out: quant)
                a.k(pool, quantized: quant, count: n, y: k, ldy: kvDim)
                Ops.quantizeActivations(pool, for: a.v.weight, x: xn, ldx: dim, count: n, out: quant)
                a.v(pool, quantized: quant, count: n, y: v, ldy: kvDim)
            }
            if let qn = a.qNorm { qn(pool, q, out: q, rows: n * qDim / qn.weight.count, ld: qn.weight.count) }
            if let kn = a.kNorm { kn(pool, k, out: k, rows: n * kvDim / kn.weight.count, ld: kn.weight.count) }

            let keys = storage.keyLayer(layer), values = storage.valueLayer(layer)
            // Sliding-window layers of split storage address their own blocks.
            let own = split && storage.sliding[layer]
            withFreqFactors { ff in
                Ops.ropeAndStore(pool, q: q, qStride: qDim, k: k, v: v, kvStride: kvDim, rows: n, positions: s.positions,
                                 slots: own ? s.slidingSlots : s.slots, keys: keys, values: values, heads: c.headCount, kvHeads: c.kvHeadCount,
                                 headDim: c.headDim, ropeDim: a.rope.dimensions, freqBase: a.rope.base,
                                 freqScale: a.rope.scale, freqFactors: ff, neox: a.rope.neox)
            }
            Ops.attention(pool, q: q, out: att,
                          sequences: UnsafeBufferPointer(start: s.attentionSequences + (own ? sequences.count : 0), count: sequences.count),
                          keys: keys, values: values, blockSizeLog2: storage.blockSizeLog2,
                          heads: c.headCount, kvHeads: c.kvHeadCount, headDim: c.headDim, scale: spec.attentionScale,
                          window: a.window, scratch: s.attentionScratch, scratchPerThread: s.attentionScratchPerThread)
            Ops.quantizeActivations(pool, for: a.o.weight, x: att, ldx: qDim, count: n, out: quant)
            a.o(pool, quantized: quant, count: n, y: tmp, ldy: dim)
            fused[layer].gateUp?.prefetch(pool)
            l.postAttentionNorm?(pool, tmp, out: tmp, rows: n, ld: dim)
            Ops.add(pool, x, tmp, rows: n, count: dim)

            l.feedForwardNorm(pool, x, out: xn, rows: n, ld: dim)
            switch l.feedForward {
            case .dense(let f):
                Ops.quantizeActivations(pool, for: f.gate, x: xn, ldx: dim, count: n, out: quant)
                if let gateUp = fused[layer].gateUp {
                    gateUp.run(pool, quantized: quant, count: n)
                    Ops.prefetch(pool, f.down)
                } else {
                    Ops.matmul(pool, f.gate, quantized: quant, count: n, y: gate, ldy: ff)
                    Ops.quantizeActivations(pool, for: f.up, x: xn, ldx: dim, count: n, out: quant)
                    Ops.matmul(pool, f.up, quantized: quant, count: n, y: up, ldy: ff)
                }
                f.activate(pool, gate: gate, up: up, rows: n)
                Ops.quantizeActivations(pool, for: f.down, x: gate, ldx: ff, count: n, out: quant)
                Ops.matmul(pool, f.down, quantized: quant, count: n, y: tmp, ldy: dim)
            case .experts(let m):
                mixture(m, fused: expertFused[layer], rows: n, out: tmp)
            }
            if layer + 1 < layers.count { fused[layer + 1].qkv?.prefetch(pool) } else { Ops.prefetch(pool, output) }
            l.postFeedForwardNorm?(pool, tmp, out: tmp, rows: n, ld: dim)
            Ops.add(pool, x, tmp, rows: n, count: dim)
        }

        // Logits: the wanted rows, normalised side by side, through the output head in one matmul.
        var rows = 0, hiddenRows = 0
        outputNorm.weight.withUnsafeBufferPointer { w in
            func take(_ r: Int) {
                Ops.rmsNorm(x + r * dim, weight: w.baseAddress!, out: xn + rows * dim, count: dim, eps: outputNorm.eps)
                rows += 1
            }
            var end = 0
            for sq in sequences {
                end += sq.tokenCount
                if sq.hidden, let hiddenOut {
                    for r in (end - sq.logitCount)..<end {
                        Ops.rmsNorm(x + r * dim, weight: w.baseAddress!, out: hiddenOut + hiddenRows * dim, count: dim, eps: outputNorm.eps)
                        hiddenRows += 1
                    }
                    continue
                }
                for r in (end - sq.logitCount)..<end { take(r) }
            }
        }
        guard rows > 0 else { return }
        Ops.quantizeActivations(pool, for: output, x: xn, ldx: dim, count: rows, out: quant)
        Ops.matmul(pool, output, quantized: quant, count: rows, y: logitsOut, ldy: c.vocabularySize)
    }

    /// The experts' sum for rows 0..<n of the normalised activations (scratch `xn`) into `out`: route every
    /// row, then run each expert once over the rows routed to it, and add each row's picks in their order.
    private func mixture(_ m: MixtureOfExperts, fused: [FusedMatmul?], rows n: Int, out: UnsafeMutablePointer<Float>) {
        let c = config, s = scratch, dim = c.embeddingLength, k = m.used
        let experts = m.experts.count
        Ops.quantizeActivations(pool, for: m.router, x: s.xn, ldx: dim, count: n, out: s.quant)
        Ops.matmul(pool, m.router, quantized: s.quant, count: n, y: s.routerLogits, ldy: experts)
        for r in 0..<n {
            ck_moe_route(s.routerLogits + r * experts, Int32(experts), Int32(k), m.normalize ? 1 : 0, s.routeIDs + r * k,
                         s.routeWeights + r * k)
        }
        // The experts picked this step, so that the next one's weights are fetched while one computes.
        var pickedCount = 0
        for e in 0..<experts {
            for r in 0..<n * k where s.routeIDs[r] == Int32(e) {
                s.pickedExperts[pickedCount] = Int32(e)
                pickedCount += 1
                break
            }
        }
        if pickedCount > 0 { fused[Int(s.pickedExperts[0])]?.prefetch(pool) }
        for p in 0..<pickedCount {
            let e = Int(s.pickedExperts[p]), f = m.experts[e]
            if p + 1 < pickedCount { fused[Int(s.pickedExperts[p + 1])]?.prefetch(pool) }
            // The rows (and which of their picks) routed to e, gathered side by side.
            var count = 0
            for r in 0..<n {
                for j in 0..<k where s.routeIDs[r * k + j] == Int32(e) {
                    s.routeRows[count] = Int32(r * k + j)
                    (s.moeIn + count * dim).update(from: s.xn + r * dim, count: dim)
                    count += 1
                }
            }
            guard count > 0 else { continue }
            ck_counter_add(s.expertTokens + e, Int64(count))
            run(f, fused: fused[e], x: s.moeIn, rows: count, out: s.moeIn)
            for g in 0..<count {
                (s.expertOut + Int(s.routeRows[g]) * dim).update(from: s.moeIn + g * dim, count: dim)
            }
        }
        for r in 0..<n {
            let o = out + r * dim
            o.update(repeating: 0, count: dim)
            for j in 0..<k {
                let w = s.routeWeights[r * k + j], y = s.expertOut + (r * k + j) * dim
                for d in 0..<dim { o[d] += w * y[d] }
            }
        }
        if let shared = m.shared, let gateWeights = m.sharedGate {
            run(shared, fused: fused[m.experts.count], x: s.xn, rows: n, out: s.moeIn)
            gateWeights.withUnsafeBufferPointer { g in
                for r in 0..<n {
                    let w = ck_sigmoid_dot(s.xn + r * dim, g.baseAddress!, Int32(dim)), y = s.moeIn + r * dim, o = out + r * dim
                    for d in 0..<dim { o[d] += w * y[d] }
                }
            }
        }
    }

    /// A gated feed-forward over `rows` rows of `x` (`dim` apart) into `out`; `out` may be `x`.
    private func run(_ f: FeedForward, fused: FusedMatmul?, x: UnsafeMutablePointer<Float>, rows: Int,
                     out: UnsafeMutablePointer<Float>) {
        let s = scratch, dim = config.embeddingLength, ff = f.gate.rows
        Ops.quantizeActivations(pool, for: f.gate, x: x, ldx: dim, count: rows, out: s.quant)
        if let fused {
            fused.run(pool, quantized: s.quant, count: rows)
            Ops.prefetch(pool, f.down)
        } else {
            Ops.matmul(pool, f.gate, quantized: s.quant, count: rows, y: s.gate, ldy: ff)
            Ops.quantizeActivations(pool, for: f.up, x: x, ldx: dim, count: rows, out: s.quant)
            Ops.matmul(pool, f.up, quantized: s.quant, count: rows, y: s.up, ldy: ff)
        }
        f.activate(pool, gate: s.gate, up: s.up, rows: rows)
        Ops.quantizeActivations(pool, for: f.down, x: s.gate, ldx: ff, count: rows, out: s.quant)
        Ops.matmul(pool, f.down, quantized: s.quant, count: rows, y: out, ldy: dim)
    }

    @inline(__always)
    private func withFreqFactors(_ body: (UnsafePointer<Float>?) -> Void) {
        if let f = ropeFreqFactors { f.withUnsafeBufferPointer { body($0.baseAddress) } } else { body(nil) }
    }
}

/// Activations of one forward chunk, allocated once per model (and grown, rarely, for more sequences).
final class Scratch {
    let x, xn, q, k, v, att, tmp, gate, up: UnsafeMutablePointer<Float>
    let quant: UnsafeMutableRawPointer
    /// Per row of the chunk: position and KV slot offset.
    let positions: UnsafeMutablePointer<Int32>
    let slots: UnsafeMutablePointer<Int>
    /// Per row: its KV slot offset in the sliding-window layers' own blocks (split storage).
    let slidingSlots: UnsafeMutablePointer<Int>
    /// Mixture of experts: router logits, each row's picks and weights, the rows gathered for one expert,
    /// which pick each gathered row is, and every pick's output (1-element buffers for dense models).
    let routerLogits, routeWeights, moeIn, expertOut: UnsafeMutablePointer<Float>
    let routeIDs, routeRows, pickedExperts: UnsafeMutablePointer<Int32>
    /// Tokens each expert has run, over all layers and forward passes (atomic counters).
    let expertTokens: UnsafeMutablePointer<Int64>
    private(set) var attentionScratch: UnsafeMutablePointer<Float>
    private(set) var attentionScratchPerThread = 0
    private(set) var attentionSequences: UnsafeMutablePointer<ck_attn_seq>
    private(set) var tables: UnsafeMutablePointer<Int32>
    private var sequenceCapacity = 0, tableCapacity = 0

    init(config c: ModelConfig, maxTokens n: Int, threads: Int, activationBytes: Int) {
        func buf(_ count: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: count)
            p.initialize(repeating: 0, count: count)
            return p
        }
        x = buf(n * c.embeddingLength)
        xn = buf(n * c.embeddingLength)
        q = buf(n * c.qDim)
        k = buf(n * c.kvDim)
        v = buf(n * c.kvDim)
        att = buf(n * c.qDim)
        tmp = buf(n * c.embeddingLength)
        gate = buf(n * c.widestFeedForward)
        up = buf(n * c.widestFeedForward)
        quant = .allocate(byteCount: n * activationBytes, alignment: 64)
        positions = .allocate(capacity: n)
        slots = .allocate(capacity: n)
        slidingSlots = .allocate(capacity: n)
        let e = c.expertCount, k = max(c.expertUsedCount, 1), moe = e > 0
        routerLogits = buf(moe ? n * e : 1)
        routeWeights = buf(moe ? n * k : 1)
        moeIn = buf(moe ? n * max(c.embeddingLength, 1) : 1)
        expertOut = buf(moe ? n * k * c.embeddingLength : 1)
        routeIDs = .allocate(capacity: moe ? n * k : 1)
        routeRows = .allocate(capacity: moe ? n * k : 1)
        pickedExperts = .allocate(capacity: max(e, 1))
        expertTokens = .allocate(capacity: max(e, 1))
        expertTokens.initialize(repeating: 0, count: max(e, 1))
        attentionScratch = buf(1)
        attentionSequences = .allocate(capacity: 1)
        tables = .allocate(capacity: 1)
    }

    func prepare(sequences: Int, tableEntries: Int) {
        if sequences > sequenceCapacity {
            attentionSequences.deallocate()
            sequenceCapacity = max(sequences, 2 * sequenceCapacity)
            attentionSequences = .allocate(capacity: sequenceCapacity)
        }
        if tableEntries > tableCapacity {
            tables.deallocate()
            tableCapacity = max(tableEntries, 2 * tableCapacity)
            tables = .allocate(capacity: tableCapacity)
        }
    }

    func ensureAttentionCapacity(_ positions: Int, threads: Int, headDim: Int) {
        let needed = positions + headDim + 8
        guard needed > attentionScratchPerThread else { return }
        let per = max(needed, 2 * attentionScratchPerThread, 1024)
        attentionScratch.deallocate()
        attentionScratch = .allocate(capacity: per * threads)
        attentionScratchPerThread = per
    }

    deinit {
        for p in [x, xn, q, k, v, att, tmp, gate, up, attentionScratch] { p.deallocate() }
        quant.deallocate()
        positions.deallocate()
        slots.deallocate()
        slidingSlots.deallocate()
        for p in [routerLogits, routeWeights, moeIn, expertOut] { p.deallocate() }
        routeIDs.deallocate()
        routeRows.deallocate()
        pickedExperts.deallocate()
        expertTokens.deallocate()
        attentionSequences.deallocate()
        tables.deallocate()
    }
}
