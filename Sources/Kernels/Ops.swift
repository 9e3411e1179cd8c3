import CKernels

/// Kernel entry points over raw buffers. Callers own all memory; nothing here allocates.
public enum Ops {
    /// Activation precision (8 or 16 bits) of the quantized matrix products for weight matrices made
    /// from now on. Process-wide: set it before loading a model.
    public static func setActivationBits(_ bits: Int) {
        ck_set_activation_bits(Int32(bits))
    }

    /// Quantizes `count` rows of `k` floats (row stride `ldx`) into `out` in the activation format of `w`.
    @inline(__always)
    public static func quantizeActivations(
        _ pool: ThreadPool, for w: WeightMatrix, x: UnsafePointer<Float>, ldx: Int, count: Int,
        out: UnsafeMutableRawPointer
    ) {
        ck_quantize_rows(pool.raw, w.activationType, x, Int32(ldx), Int32(count), Int32(w.columns), out, w.activationRowBytes)
    }

    /// y[c * ldy + r] = W[r] · x[c] for `count` activation rows already quantized for `w`.
    @inline(__always)
    public static func matmul(
        _ pool: ThreadPool, _ w: WeightMatrix, quantized x: UnsafeRawPointer, count: Int,
        y: UnsafeMutablePointer<Float>, ldy: Int
    ) {
        ck_matmul(pool.raw, w.kernelType, w.data, w.rowStride, Int32(w.rows), Int32(w.columns),
                  w.activationType, x, w.activationRowBytes, Int32(count), y, Int32(ldy))
    }

    /// Lets the pool's threads pull the weights they will read first in `matmul(w)` into cache
    /// whenever they would otherwise wait.
    public static func prefetch(_ pool: ThreadPool, _ w: WeightMatrix) {
        var base: UnsafeRawPointer? = w.data
        var stride = w.rowStride
        var rows = Int32(w.rows)
        ck_matmul_prefetch(pool.raw, 1, &base, &stride, &rows)
    }

    @inline(__always)
    public static func rmsNorm(_ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, count: Int, eps: Float) {
        ck_rms_norm(x, weight, out, Int32(count), eps)
    }

    @inline(__always)
    public static func rope(
        _ x: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, ropeDim: Int, position: Int, freqBase: Float,
        freqScale: Float, freqFactors: UnsafePointer<Float>?, neox: Bool
    ) {
        ck_rope(x, Int32(heads), Int32(headDim), Int32(ropeDim), Int32(position), freqBase, freqScale, freqFactors, neox ? 1 : 0)
    }

    @inline(__always)
    public static func swiglu(gate: UnsafePointer<Float>, up: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, count: Int) {
        ck_swiglu(gate, up, out, Int32(count))
    }

    @inline(__always)
    public static func add(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
        ck_add(y, x, Int32(count))
    }

    /// RMSNorm of `rows` rows (`ld` floats apart) of `count` elements, on the pool when there are several.
    public static func rmsNorm(
        _ pool: ThreadPool, _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
        rows: Int, ld: Int, count: Int, eps: Float
    ) {
        ck_rms_norm_rows(pool.raw, x, weight, out, Int32(rows), Int32(ld), Int32(count), eps)
    }

    public static func swiglu(
        _ pool: ThreadPool, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
        rows: Int, count: Int
    ) {
        ck_swiglu_rows(pool.raw, gate, up, out, Int32(rows), Int32(count))
    }

    /// out = gelu(gate) * up (GELU with tanh's approximation), row by row.
    public static func geglu(
        _ pool: ThreadPool, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
        rows: Int, count: Int
    ) {
        ck_geglu_rows(pool.raw, gate, up, out, Int32(rows), Int32(count))
    }

    /// LayerNorm with bias of `rows` rows (`ld` floats apart) of `count` elements; `out` may be `x`.
    public static func layerNorm(
        _ pool: ThreadPool, _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
        out: UnsafeMutablePointer<Float>, rows: Int, ld: Int, count: Int, eps: Float
    ) {
        ck_layer_norm_rows(pool.raw, x, weight, bias, out, Int32(rows), Int32(ld), Int32(count), eps)
    }

    /// GELU (erf form) in place over `rows` rows of `count` elements.
    public static func gelu(_ pool: ThreadPool, _ x: UnsafeMutablePointer<Float>, rows: Int, count: Int) {
        ck_gelu_erf_rows(pool.raw, x, Int32(rows), Int32(count))
    }

    /// Bidirectional attention within each sequence (see `ck_attention_dense`).
    public static func denseAttention(
        _ pool: ThreadPool, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, ld: Int,
        out: UnsafeMutablePointer<Float>, ldo: Int, starts: UnsafePointer<Int32>, lengths: UnsafePointer<Int32>,
        sequences: Int, heads: Int, headDim: Int, scale: Float, scratch: UnsafeMutablePointer<Float>, scratchPerThread: Int,
        portable: Bool = false
    ) {
        (portable ? ck_attention_dense_portable : ck_attention_dense)(
            pool.raw, q, k, v, Int32(ld), out, Int32(ldo), Int32(sequences), starts, lengths, Int32(heads),
            Int32(headDim), scale, scratch, Int32(scratchPerThread))
    }

    public static func add(_ pool: ThreadPool, _ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, rows: Int, count: Int) {
        ck_add_rows(pool.raw, y, x, Int32(rows), Int32(count))
    }

    /// RoPE on each row's q and k at `positions[row]`, then its k and v stored as f16 at the cache
    /// offsets `slots[row]`.
    public static func ropeAndStore(
        _ pool: ThreadPool, q: UnsafeMutablePointer<Float>, qStride: Int, k: UnsafeMutablePointer<Float>,
        v: UnsafePointer<Float>, kvStride: Int, rows: Int, positions: UnsafePointer<Int32>, slots: UnsafePointer<Int>,
        keys: UnsafeMutablePointer<UInt16>, values: UnsafeMutablePointer<UInt16>, heads: Int, kvHeads: Int,
        headDim: Int, ropeDim: Int, freqBase: Float, freqScale: Float, freqFactors: UnsafePointer<Float>?, neox: Bool
    ) {
        ck_rope_store_rows(pool.raw, q, Int32(qStride), k, v, Int32(kvStride), Int32(rows), positions, slots, keys, values,
                           Int32(heads), Int32(kvHeads), Int32(headDim), Int32(ropeDim), freqBase, freqScale,
                           freqFactors, neox ? 1 : 0)
    }

    @inline(__always)
    public static func toHalf(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<UInt16>, count: Int) {
        ck_fp32_to_fp16_row(x, y, Int32(count))
    }

    /// Causal attention for a batch of sequences over one layer of a block-paged f16 KV cache
    /// (see `ck_attention`).
    public static func attention(
        _ pool: ThreadPool, q: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
        sequences: UnsafeBufferPointer<ck_attn_seq>, keys: UnsafePointer<UInt16>, values: UnsafePointer<UInt16>,
        blockSizeLog2: Int32, heads: Int, kvHeads: Int, headDim: Int, scale: Float, window: Int = 0,
        scratch: UnsafeMutablePointer<Float>, scratchPerThread: Int
    ) {
        ck_attention(pool.raw, q, out, Int32(sequences.count), sequences.baseAddress, keys, values, blockSizeLog2,
                     Int32(heads), Int32(kvHeads), Int32(headDim), scale, Int32(window), scratch, Int32(scratchPerThread))
    }
}

/// Several matrices that read the same quantized activations (e.g. Q/K/V, gate/up) multiplied in one
/// pool dispatch into fixed output buffers. Built once per model, so a forward pass allocates nothing.
public final class FusedMatmul: @unchecked Sendable {
    private let matrices: [WeightMatrix]  // keeps packed storage alive
    private let types: [Int32]
    private let weights: [UnsafeRawPointer?]
    private let strides: [Int]
    private let rows: [Int32]
    private let outputs: [UnsafeMutablePointer<Float>?]
    private let ldys: [Int32]
    private let columns: Int32
    private let activationRowBytes: Int
    public let activationType: Int32

    /// nil when the matrices do not share columns and activation type.
    public init?(_ ws: [WeightMatrix], outputs: [UnsafeMutablePointer<Float>], ldys: [Int]) {
        guard let first = ws.first, ws.count <= 8, ws.count == outputs.count, ws.count == ldys.count,
              ws.allSatisfy({ $0.columns == first.columns && $0.activationType == first.activationType }) else { return nil }
        matrices = ws
        types = ws.map(\.kernelType)
        weights = ws.map { $0.data }
        strides = ws.map(\.rowStride)
        rows = ws.map { Int32($0.rows) }
        self.outputs = outputs
        self.ldys = ldys.map { Int32($0) }
        columns = Int32(first.columns)
        activationRowBytes = first.activationRowBytes
        activationType = first.activationType
    }

    /// See `Ops.prefetch`.
    public func prefetch(_ pool: ThreadPool) {
        ck_matmul_prefetch(pool.raw, Int32(types.count), weights, strides, rows)
    }

    /// outputs[i][c * ldys[i] + r] = W_i[r] · x[c] for `count` activation rows quantized for these matrices.
    public func run(_ pool: ThreadPool, quantized x: UnsafeRawPointer, count: Int) {
        ck_matmul_multi(pool.raw, Int32(types.count), types, weights, strides, rows, columns, activationType, x,
                        activationRowBytes, Int32(count), outputs, ldys)
    }
}
