import CKernels
import Foundation
import Kernels
import Testing

struct SeededRandom {
    var state: UInt64
    mutating func next() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int64(bitPattern: state >> 11) % 2_000_001 - 1_000_000) / 1_000_000
    }
    mutating func array(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in next() * scale } }
}

func quantize(_ type: Int32, _ x: [Float]) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: ck_row_bytes(type, Int32(x.count)))
    out.withUnsafeMutableBytes { ck_quantize_row(type, x, $0.baseAddress!, Int32(x.count)) }
    return out
}

/// Formats the kernels cannot quantize to (Q5_0, Q5_1, IQ4_NL and the K-quants): rows of random quants and
/// sub-block scales, with finite f16 block scales (and Q5_1's minimums) of either sign.
let randomlyFilledTypes = [Int32(CK_TYPE_Q5_0), Int32(CK_TYPE_Q5_1), Int32(CK_TYPE_IQ4_NL), Int32(CK_TYPE_Q2_K),
                           Int32(CK_TYPE_Q3_K), Int32(CK_TYPE_Q4_K), Int32(CK_TYPE_Q5_K), Int32(CK_TYPE_Q6_K)]

func randomQuantized(_ type: Int32, rows: Int, k: Int, seed: UInt64) -> [UInt8] {
    var state = seed
    func next() -> UInt64 { state = state &* 6364136223846793005 &+ 1442695040888963407; return state >> 33 }
    let (elements, bytes, halves): (Int, Int, [(Int, Float)]) = switch type {
    case Int32(CK_TYPE_Q4_K): (256, 144, [(0, 0.02), (2, 0.01)])
    case Int32(CK_TYPE_Q5_K): (256, 176, [(0, 0.01), (2, 0.01)])
    case Int32(CK_TYPE_Q6_K): (256, 210, [(208, 0.002)])
    case Int32(CK_TYPE_Q3_K): (256, 110, [(108, 0.005)])
    case Int32(CK_TYPE_Q2_K): (256, 84, [(80, 0.02), (82, 0.01)])
    case Int32(CK_TYPE_Q5_1): (32, 24, [(0, 0.05), (2, 0.5)])
    case Int32(CK_TYPE_IQ4_NL): (32, 18, [(0, 0.01)])
    default: (32, 22, [(0, 0.05)])
    }
    var out = (0..<(rows * k / elements * bytes)).map { _ in UInt8(truncatingIfNeeded: next()) }
    for b in stride(from: 0, to: out.count, by: bytes) {
        for (off, scale) in halves {
            let h = ck_fp32_to_fp16(scale * (Float(next() % 2000) / 1000 - 1))
            out[b + off] = UInt8(h & 0xFF)
            out[b + off + 1] = UInt8(h >> 8)
        }
    }
    return out
}

func dequantize(_ type: Int32, _ q: [UInt8], _ n: Int) -> [Float] {
    var out = [Float](repeating: 0, count: n)
    q.withUnsafeBytes { ck_dequantize_row(type, $0.baseAddress!, &out, Int32(n)) }
    return out
}

@Suite struct QuantizationTests {
    static let types: [(Int32, String, Float)] = [
        (Int32(CK_TYPE_Q4_0), "Q4_0", 0.15), (Int32(CK_TYPE_Q4_1), "Q4_1", 0.08), (Int32(CK_TYPE_Q8_0), "Q8_0", 0.01),
        (Int32(CK_TYPE_A8), "A8", 0.01), (Int32(CK_TYPE_A16), "A16", 0.0001), (Int32(CK_TYPE_F16), "F16", 0.001), (Int32(CK_TYPE_BF16), "BF16", 0.008),
    ]

    /// Round-trip error per element is within a fraction of the block's range.
    @Test(arguments: [32, 64, 96, 576, 1536])
    func roundTripErrorBounded(n: Int) {
        var rng = SeededRandom(state: UInt64(n))
        var x = rng.array(n, scale: 3)
        x[5] = 0
        if n >= 64 { for i in 32..<64 { x[i] = 0 } }  // an all-zero block
        if n >= 96 { x[70] = 250 }  // an outlier
        for (t, name, tol) in Self.types {
            let y = dequantize(t, quantize(t, x), n)
            for b in stride(from: 0, to: n, by: 32) {
                let block = x[b..<min(n, b + 32)]
                let range = max(block.map(abs).max()!, 1e-6)
                for i in block.indices {
                    #expect(abs(y[i] - x[i]) <= tol * range + 1e-6, "\(name) n=\(n) i=\(i): \(x[i]) -> \(y[i])")
                }
            }
            if n >= 64 { #expect(y[32..<64].allSatisfy { $0 == 0 }, "\(name) zero block") }
        }
    }

    /// Dot products equal the dot of the dequantized operands (integer part exact, scales in float).
    @Test(arguments: [32, 96, 576, 1536])
    func vecDotMatchesDequantized(n: Int) {
        var rng = SeededRandom(state: UInt64(7 * n))
        let w = rng.array(n), x = rng.array(n, scale: 4)
        let pairs: [(Int32, Int32)] = [
            (CK_TYPE_Q4_0, CK_TYPE_A8), (CK_TYPE_Q4_0, CK_TYPE_A16), (CK_TYPE_Q4_1, CK_TYPE_A8), (CK_TYPE_Q4_1, CK_TYPE_A16),
            (CK_TYPE_Q8_0, CK_TYPE_A8), (CK_TYPE_Q8_0, CK_TYPE_A16), (CK_TYPE_F16, CK_TYPE_F16), (CK_TYPE_F32, CK_TYPE_F32),
            (CK_TYPE_Q4_K, CK_TYPE_A8), (CK_TYPE_Q4_K, CK_TYPE_A16), (CK_TYPE_Q6_K, CK_TYPE_A8), (CK_TYPE_Q6_K, CK_TYPE_A16),
            (CK_TYPE_Q5_0, CK_TYPE_A8), (CK_TYPE_Q5_0, CK_TYPE_A16), (CK_TYPE_Q5_K, CK_TYPE_A8), (CK_TYPE_Q5_K, CK_TYPE_A16),
            (CK_TYPE_Q2_K, CK_TYPE_A8), (CK_TYPE_Q2_K, CK_TYPE_A16), (CK_TYPE_Q3_K, CK_TYPE_A8), (CK_TYPE_Q3_K, CK_TYPE_A16),
            (CK_TYPE_Q5_1, CK_TYPE_A8), (CK_TYPE_Q5_1, CK_TYPE_A16), (CK_TYPE_IQ4_NL, CK_TYPE_A8), (CK_TYPE_IQ4_NL, CK_TYPE_A16),
            (CK_TYPE_BF16, CK_TYPE_F32),
        ].map { (Int32($0.0), Int32($0.1)) }
        for (wt, vt) in pairs where n % Int(ck_type_block_elements(wt)) == 0 {
            let wq = randomlyFilledTypes.contains(wt) ? randomQuantized(wt, rows: 1, k: n, seed: UInt64(n)) : quantize(wt, w)
            let xq = quantize(vt, x)
            let wd = dequantize(wt, wq, n), xd = dequantize(vt, xq, n)
            var expected = 0.0
            for i in 0..<n { expected += Double(wd[i]) * Double(xd[i]) }
            let got = wq.withUnsafeBytes { a in xq.withUnsafeBytes { b in ck_vec_dot(wt, vt, Int32(n), a.baseAddress!, b.baseAddress!) } }
            let scale = (0..<n).reduce(0.0) { $0 + abs(Double(wd[$1]) * Double(xd[$1])) }
            // Integer block dots are exact; only the f32 scaling and accumulation round.
            #expect(abs(Double(got) - expected) <= 1e-5 * max(scale, 1), "types \(wt), \(vt) n \(n): \(got) vs \(expected)")
        }
    }

    @Test func halfConversionEdgeCases() {
        #expect(ck_fp16_to_fp32(ck_fp32_to_fp16(0)) == 0)
        #expect(ck_fp16_to_fp32(ck_fp32_to_fp16(-0.0)).sign == .minus)
        #expect(ck_fp16_to_fp32(ck_fp32_to_fp16(65504)) == 65504)
        #expect(ck_fp16_to_fp32(ck_fp32_to_fp16(70000)) == .infinity)
        #expect(ck_fp16_to_fp32(ck_fp32_to_fp16(-.infinity)) == -.infinity)
        #expect(ck_fp16_to_fp32(ck_fp32_to_fp16(.nan)).isNaN)
        #expect(ck_fp16_to_fp32(ck_fp32_to_fp16(6e-8)) > 0)  // subnormal
        #expect(ck_fp16_to_fp32(ck_fp32_to_fp16(1 + 1.0 / 2048)) == 1)  // tie rounds to even
        #expect(ck_fp16_to_fp32(ck_fp32_to_fp16(1 + 3.0 / 2048)) == 1 + 4.0 / 2048)
        #expect(ck_bf16_to_fp32(0x3F80) == 1)
    }
}

@Suite struct OpTests {
    @Test func rmsNorm() {
        var rng = SeededRandom(state: 3)
        let x = rng.array(576, scale: 5), w = rng.array(576)
        var y = [Float](repeating: 0, count: 576)
        ck_rms_norm(x, w, &y, 576, 1e-5)
        let rms = (x.reduce(0.0) { $0 + Double($1) * Double($1) } / 576 + 1e-5).squareRoot()
        for i in 0..<576 { #expect(abs(Double(y[i]) - Double(x[i]) / rms * Double(w[i])) < 1e-5) }
    }

    @Test(arguments: [(0, false), (1, false), (7, true), (1000, false), (1000, true)])
    func rope(position: Int, neox: Bool) {
        var rng = SeededRandom(state: UInt64(position + 1))
        let heads = 3, hd = 64, nRot = 64
        let x = rng.array(heads * hd)
        let factors: [Float] = (0..<(nRot / 2)).map { 1 + Float($0) / 32 }
        for useFactors in [false, true] {
            var y = x
            factors.withUnsafeBufferPointer { f in
                ck_rope(&y, Int32(heads), Int32(hd), Int32(nRot), Int32(position), 10000, 1, useFactors ? f.baseAddress : nil, neox ? 1 : 0)
            }
            for h in 0..<heads {
                for i in 0..<(nRot / 2) {
                    let theta = Double(position) * pow(10000, -2 * Double(i) / Double(nRot)) / (useFactors ? Double(factors[i]) : 1)
                    let a = h * hd + (neox ? i : 2 * i), b = h * hd + (neox ? i + nRot / 2 : 2 * i + 1)
                    let e0 = Double(x[a]) * cos(theta) - Double(x[b]) * sin(theta)
                    let e1 = Double(x[a]) * sin(theta) + Double(x[b]) * cos(theta)
                    #expect(abs(Double(y[a]) - e0) < 2e-4 && abs(Double(y[b]) - e1) < 2e-4, "h \(h) i \(i)")
                }
            }
        }
    }

    @Test(arguments: [0, 5])
    func attentionMatchesNaive(window: Int) {
        var rng = SeededRandom(state: 11)
        let heads = 4, kvHeads = 2, hd = 64, start = 9, queries = 3, positions = start + queries
        let q = rng.array(queries * heads * hd)
        let kf = rng.array(positions * kvHeads * hd), vf = rng.array(positions * kvHeads * hd)
        let k = kf.map(ck_fp32_to_fp16), v = vf.map(ck_fp32_to_fp16)
        let pool = ThreadPool(threads: 2)
        var out = [Float](repeating: 0, count: q.count)
        var scratch = [Float](repeating: 0, count: 2 * (positions + hd + 8))
        let scale = 1 / Float(hd).squareRoot()
        // One block of 16 positions holds them all (block table [0]).
        let padded = 16 * kvHeads * hd
        let kb = k + [UInt16](repeating: 0, count: padded - k.count), vb = v + [UInt16](repeating: 0, count: padded - v.count)
        let table: [Int32] = [0]
        table.withUnsafeBufferPointer { t in
            let seq = [ck_attn_seq(n_q: Int32(queries), row0: 0, pos0: Int32(start), blocks: t.baseAddress!)]
            seq.withUnsafeBufferPointer { sp in
                Ops.attention(pool, q: q, out: &out, sequences: sp, keys: kb, values: vb, blockSizeLog2: 4,
                              heads: heads, kvHeads: kvHeads, headDim: hd, scale: scale, window: window,
                              scratch: &scratch, scratchPerThread: positions + hd + 8)
            }
        }
        for qi in 0..<queries {
            for h in 0..<heads {
                let kvh = h / (heads / kvHeads), n = start + qi + 1
                let lo = window > 0 ? max(0, n - window) : 0
                var s = [Double](repeating: -.infinity, count: n)
                for j in lo..<n {
                    s[j] = 0
                    for d in 0..<hd {
                        s[j] += Double(q[(qi * heads + h) * hd + d]) * Double(ck_fp16_to_fp32(k[(j * kvHeads + kvh) * hd + d]))
                    }
                    s[j] *= Double(scale)
                }
                let m = s.max()!
                let e = s.map { exp($0 - m) }, z = e.reduce(0, +)
                for d in 0..<hd {
                    var o = 0.0
                    for j in 0..<n { o += e[j] / z * Double(ck_fp16_to_fp32(v[(j * kvHeads + kvh) * hd + d])) }
                    #expect(abs(Double(out[(qi * heads + h) * hd + d]) - o) < 1e-5)
                }
            }
        }
    }
}

@Suite struct ThreadPoolTests {
    final class Counter: @unchecked Sendable { var hits = [Int](repeating: 0, count: 8) }

    @Test(arguments: [1, 2, 3, 4])
    func manyBackToBackRuns(threads: Int32) {
        let pool = ck_pool_create(threads)!
        defer { ck_pool_destroy(pool) }
        #expect(ck_pool_size(pool) == threads)
        let counter = Counter()
        let ctx = Unmanaged.passUnretained(counter).toOpaque()
        for _ in 0..<2000 {
            ck_pool_run(pool, { ctx, ith, nth in
                let c = Unmanaged<Counter>.fromOpaque(ctx!).takeUnretainedValue()
                c.hits[Int(ith)] += Int(nth)
            }, ctx)
        }
        for i in 0..<Int(threads) { #expect(counter.hits[i] == 2000 * Int(threads)) }
    }

    @Test func createAndDestroyRepeatedly() {
        for i in 0..<50 {
            let p = ThreadPool(threads: 1 + i % 3)
            #expect(p.threadCount == 1 + i % 3)
        }
    }
}
