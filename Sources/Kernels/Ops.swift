import CKernels

/// Kernel entry points over raw buffers. Callers own all memory; nothing here allocates.
public enum Ops {
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
        ck_matmul(pool.raw, Int32(w.type.rawValue), w.data, w.rowStride, Int32(w.rows), Int32(w.columns),
                  x, w.activationRowBytes, Int32(count), y, Int32(ldy))
    }

    /// Several matrices sharing one quantized activation (same columns and activation type) in one
    /// dispatch: ys[i][c * ldys[i] + r] = Ws[i][r] · x[c].
    public static func matmul(
        _ pool: ThreadPool, _ ws: [WeightMatrix], quantized x: UnsafeRawPointer, count: Int,
        ys: [UnsafeMutablePointer<Float>], ldys: [Int]
    ) {
        precondition(ws.count == ys.count && ws.count == ldys.count && ws.count <= 8)
        let types = ws.map { Int32($0.type.rawValue) }, strides = ws.map(\.rowStride), rows = ws.map { Int32($0.rows) }
        let ptrs: [UnsafeRawPointer?] = ws.map { $0.data }
        let outs: [UnsafeMutablePointer<Float>?] = ys
        ck_matmul_multi(pool.raw, Int32(ws.count), types, ptrs, strides, rows, Int32(ws[0].columns), x,
                        ws[0].activationRowBytes, Int32(count), outs, ldys.map { Int32($0) })
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

    @inline(__always)
    public static func toHalf(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<UInt16>, count: Int) {
        ck_fp32_to_fp16_row(x, y, Int32(count))
    }

    /// Causal attention of `queries` rows (positions startPosition...) against an f16 KV cache.
    public static func attention(
        _ pool: ThreadPool, q: UnsafePointer<Float>, queries: Int, startPosition: Int,
        keys: UnsafePointer<UInt16>, values: UnsafePointer<UInt16>, heads: Int, kvHeads: Int, headDim: Int,
        scale: Float, out: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>, scratchPerThread: Int
    ) {
        ck_attention(pool.raw, q, Int32(queries), Int32(startPosition), keys, values, Int32(heads), Int32(kvHeads),
                     Int32(headDim), scale, out, scratch, Int32(scratchPerThread))
    }
}
