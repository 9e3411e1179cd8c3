import CKernels
import Foundation
import GGUF
import Kernels
import Testing

/// The encoder kernels against float64 references, and the f32-activation matrix product's promise: a
/// (row, column) result is the same bits however many columns it is computed with.
@Suite struct EncoderKernelTests {
    @Test(arguments: [1, 7, 384, 1000])
    func layerNormMatchesDouble(n: Int) {
        var rng = SeededRandom(state: UInt64(n))
        let x = rng.array(n, scale: 3).map { $0 + 0.5 }, w = rng.array(n), b = rng.array(n)
        var y = [Float](repeating: 0, count: n)
        ck_layer_norm(x, w, b, &y, Int32(n), 1e-12)
        var portable = y
        ck_layer_norm_portable(x, w, b, &portable, Int32(n), 1e-12)
        #expect(y.map(\.bitPattern) == portable.map(\.bitPattern), "the SIMD and portable kernels' bits")
        let mean = x.reduce(0.0) { $0 + Double($1) } / Double(n)
        let variance = x.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(n)
        for i in 0..<n {
            let exact = (Double(x[i]) - mean) / (variance + 1e-12).squareRoot() * Double(w[i]) + Double(b[i])
            #expect(abs(Double(y[i]) - exact) < 1e-5 * max(1, abs(exact)), "element \(i)")
        }
    }

    /// Within 2e-7 of gelu's exact value in absolute terms of x/2 (1 + erf), on a dense grid and the tails;
    /// the AVX2 and portable versions give the same bits.
    @Test func geluMatchesErf() {
        let x: [Float] = stride(from: -12.0, through: 12.0, by: 0.0137).map { Float($0) } + [0, -0.0, 1e-30, -1e-30, 40, -40]
        var fast = [Float](repeating: 0, count: x.count), portable = fast
        ck_gelu_erf(x, &fast, Int32(x.count))
        ck_gelu_erf_portable(x, &portable, Int32(x.count))
        #expect(fast.map(\.bitPattern) == portable.map(\.bitPattern))
        for (i, v) in x.enumerated() {
            let exact = 0.5 * Double(v) * (1 + erf(Double(v) / 2.0.squareRoot()))
            #expect(abs(Double(fast[i]) - exact) <= 2e-7 * max(1, abs(Double(v))), "x = \(v)")
        }
    }

    /// Each sequence's rows attend to all of its rows and none of the others'.
    @Test func denseAttentionMatchesNaive() {
        var rng = SeededRandom(state: 5)
        let heads = 3, hd = 32, e = heads * hd, lengths: [Int32] = [5, 1, 17], starts: [Int32] = [0, 5, 6]
        let rows = Int(lengths.reduce(0, +))
        let q = rng.array(rows * e, scale: 2), k = rng.array(rows * e, scale: 2), v = rng.array(rows * e)
        var out = [Float](repeating: 0, count: rows * e)
        var scratch = [Float](repeating: 0, count: 2 * 64)
        let pool = ThreadPool(threads: 2)
        let scale = 1 / Float(hd).squareRoot()
        Ops.denseAttention(pool, q: q, k: k, v: v, ld: e, out: &out, ldo: e, starts: starts, lengths: lengths,
                           sequences: lengths.count, heads: heads, headDim: hd, scale: scale, scratch: &scratch,
                           scratchPerThread: 64)
        // The portable kernel gives the same bits (8 keys at a time in the SIMD one, and the 17th alone).
        var portable = [Float](repeating: 0, count: rows * e)
        Ops.denseAttention(pool, q: q, k: k, v: v, ld: e, out: &portable, ldo: e, starts: starts, lengths: lengths,
                           sequences: lengths.count, heads: heads, headDim: hd, scale: scale, scratch: &scratch,
                           scratchPerThread: 64, portable: true)
        #expect(out.map(\.bitPattern) == portable.map(\.bitPattern))
        for (s, start) in starts.enumerated() {
            let r0 = Int(start), n = Int(lengths[s])
            for i in r0..<r0 + n {
                for h in 0..<heads {
                    var scores = (r0..<r0 + n).map { j in
                        (0..<hd).reduce(0.0) { $0 + Double(q[i * e + h * hd + $1]) * Double(k[j * e + h * hd + $1]) } * Double(scale)
                    }
                    let m = scores.max()!
                    scores = scores.map { exp($0 - m) }
                    let z = scores.reduce(0, +)
                    for d in 0..<hd {
                        let o = (0..<n).reduce(0.0) { $0 + scores[$1] / z * Double(v[(r0 + $1) * e + h * hd + d]) }
                        #expect(abs(Double(out[i * e + h * hd + d]) - o) < 1e-5)
                    }
                }
            }
        }
    }

    /// F16 and F32 weights with f32 activations: every column of a 23-column product equals the same
    /// column computed alone, bit for bit, and is within float rounding of the float64 product.
    @Test(arguments: [GGMLType.f16, .f32], [384, 1000])
    func floatProductIsBatchInvariant(type: GGMLType, k: Int) throws {
        var rng = SeededRandom(state: UInt64(k))
        let rows = 37, cols = 23
        let wf = rng.array(rows * k)
        let bytes: [UInt8] = type == .f16
            ? wf.map(ck_fp32_to_fp16).withUnsafeBytes { Array($0) } : wf.withUnsafeBytes { Array($0) }
        let x = rng.array(cols * k)
        try bytes.withUnsafeBytes { raw in
            let plain = try WeightMatrix(name: "w", type: type, rows: rows, columns: k, data: raw.baseAddress!).withFloatActivations()
            #expect(plain.activationType == Int32(GGMLType.f32.rawValue))
            // As 16-row f32 panels (what encoders run): 37 rows end in a partial panel, 23 columns in a partial tile.
            let m = plain.floatPanels()
            #expect(m.kernelType == Int32(CK_TYPE_F32_P16))
            var row = [Float](repeating: 0, count: k), original = row
            for r in [0, 15, 16, 36] {
                m.dequantizeRow(r, into: &row)
                plain.dequantizeRow(r, into: &original)
                #expect(row == original, "row \(r) unpacked")
            }
            let pool = ThreadPool(threads: 2)
            var all = [Float](repeating: 0, count: cols * rows)
            x.withUnsafeBytes { xb in Ops.matmul(pool, m, quantized: xb.baseAddress!, count: cols, y: &all, ldy: rows) }
            var portable = [Float](repeating: 0, count: cols * rows)
            x.withUnsafeBytes { xb in
                ck_matmul_panels_portable(Int32(k), m.data.assumingMemoryBound(to: Float.self), Int32(rows), xb.baseAddress!,
                                          k * 4, Int32(cols), &portable, Int32(rows))
            }
            #expect(portable.map(\.bitPattern) == all.map(\.bitPattern), "the portable kernel's bits")
            for c in 0..<cols {
                var one = [Float](repeating: 0, count: rows)
                x.withUnsafeBytes { xb in Ops.matmul(pool, m, quantized: xb.baseAddress! + c * k * 4, count: 1, y: &one, ldy: rows) }
                #expect(one.map(\.bitPattern) == all[c * rows..<(c + 1) * rows].map(\.bitPattern), "column \(c)")
                for r in 0..<rows {
                    let w = (0..<k).map { Double(type == .f16 ? ck_fp16_to_fp32(ck_fp32_to_fp16(wf[r * k + $0])) : wf[r * k + $0]) }
                    let exact = (0..<k).reduce(0.0) { $0 + w[$1] * Double(x[c * k + $1]) }
                    #expect(abs(Double(one[r]) - exact) < 1e-4, "row \(r), column \(c)")
                }
            }
        }
    }
}
