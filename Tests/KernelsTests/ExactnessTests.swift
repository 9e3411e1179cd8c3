import CKernels
import Kernels
import Testing

/// The SIMD kernels that emulate the reference's float order must equal their portable scalar twins
/// bit for bit (that is what keeps outputs identical to llama.cpp on every machine).
@Suite struct ExactnessTests {
    struct LCG {
        var state: UInt64
        mutating func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2_000_001 - 1_000_000) / 1_000_000
        }
    }

    @Test(arguments: [(1, 64, 37), (5, 64, 12), (1, 40, 9), (3, 40, 30), (1, 36, 5), (4, 36, 1), (1, 128, 300)])
    func attentionMatchesPortable(queries: Int, headDim: Int, start: Int) {
        let heads = 6, kvHeads = 2, positions = start + queries
        var rng = LCG(state: UInt64(headDim * 1000 + start))
        let kvDim = kvHeads * headDim
        let q = (0..<(queries * heads * headDim)).map { _ in rng.next() * 3 }
        let k = (0..<(positions * kvDim)).map { _ in ck_fp32_to_fp16(rng.next() * 2) }
        let v = (0..<(positions * kvDim)).map { _ in ck_fp32_to_fp16(rng.next()) }
        let pool = ck_pool_create(2)!
        defer { ck_pool_destroy(pool) }
        let per = Int32(positions + headDim + 8)
        var scratch = [Float](repeating: 0, count: Int(per) * 2)
        var fast = [Float](repeating: 0, count: q.count), slow = fast
        let scale = 1 / Float(headDim).squareRoot()
        ck_attention(pool, q, Int32(queries), Int32(start), k, v, Int32(heads), Int32(kvHeads), Int32(headDim), scale, &fast, &scratch, per)
        ck_attention_portable(pool, q, Int32(queries), Int32(start), k, v, Int32(heads), Int32(kvHeads), Int32(headDim), scale, &slow, &scratch, per)
        #expect(fast.map(\.bitPattern) == slow.map(\.bitPattern))
        #expect(fast.allSatisfy { $0.isFinite })
    }

    @Test func swigluMatchesPortable() {
        var rng = LCG(state: 9)
        for n in [1, 7, 8, 9, 64, 1536, 1541] {
            let gate = (0..<n).map { _ in rng.next() * 30 }, up = (0..<n).map { _ in rng.next() * 4 }
            var a = [Float](repeating: 0, count: n), b = a
            ck_swiglu(gate, up, &a, Int32(n))
            ck_swiglu_portable(gate, up, &b, Int32(n))
            #expect(a.map(\.bitPattern) == b.map(\.bitPattern), "n = \(n)")
            for i in 0..<n {
                let g = Double(gate[i]), expected = g / (1 + Foundation_exp(-g)) * Double(up[i])
                #expect(abs(Double(a[i]) - expected) <= 1e-5 * max(1, abs(expected)))
            }
        }
    }

    /// Four-row matmul kernels give exactly the single-row results.
    @Test(arguments: [Int32(CK_TYPE_Q4_1), Int32(CK_TYPE_Q8_0), Int32(CK_TYPE_Q4_0)])
    func multiRowMatmulEqualsSingleRow(type: Int32) {
        var rng = LCG(state: UInt64(type))
        let k = 576, rows = 23
        let w = (0..<(k * rows)).map { _ in rng.next() }
        let x = (0..<(k * 3)).map { _ in rng.next() * 5 }
        let rowBytes = ck_row_bytes(type, Int32(k))
        var wq = [UInt8](repeating: 0, count: rowBytes * rows)
        wq.withUnsafeMutableBytes { buf in
            for r in 0..<rows { w.withUnsafeBufferPointer { ck_quantize_row(type, $0.baseAddress! + r * k, buf.baseAddress! + r * rowBytes, Int32(k)) } }
        }
        let vt = ck_vec_dot_type(type)
        let xBytes = ck_row_bytes(vt, Int32(k))
        var xq = [UInt8](repeating: 0, count: xBytes * 3)
        xq.withUnsafeMutableBytes { buf in
            for c in 0..<3 { x.withUnsafeBufferPointer { ck_quantize_row(vt, $0.baseAddress! + c * k, buf.baseAddress! + c * xBytes, Int32(k)) } }
        }
        let pool = ck_pool_create(3)!
        defer { ck_pool_destroy(pool) }
        var y = [Float](repeating: 0, count: rows * 3)
        ck_matmul(pool, type, wq, rowBytes, Int32(rows), Int32(k), xq, xBytes, 3, &y, Int32(rows))
        wq.withUnsafeBytes { wb in
            xq.withUnsafeBytes { xb in
                for c in 0..<3 {
                    for r in 0..<rows {
                        let single = ck_vec_dot(type, Int32(k), wb.baseAddress! + r * rowBytes, xb.baseAddress! + c * xBytes)
                        #expect(single.bitPattern == y[c * rows + r].bitPattern, "row \(r) col \(c)")
                    }
                }
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
func Foundation_exp(_ x: Double) -> Double { Glibc.exp(x) }
#else
import Darwin
func Foundation_exp(_ x: Double) -> Double { Darwin.exp(x) }
#endif
