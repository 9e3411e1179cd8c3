import CKernels
import Kernels
import Testing

/// Every SIMD kernel equals its portable scalar definition bit for bit, and a row's result does not
/// depend on the batch, the tile or the chunk it is computed in (batch invariance, on every CPU).
@Suite struct ExactnessTests {
    struct LCG {
        var state: UInt64
        mutating func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2_000_001 - 1_000_000) / 1_000_000
        }
    }

    /// Per sequence: query rows, start position.
    typealias SequenceShape = (queries: Int, start: Int)

    /// Runs the AVX2 and portable attention over a paged cache whose blocks are shuffled: all sequences,
    /// only sequence `only`, or only rows `window` of the first (at their own rows of q and out).
    static func pagedAttention(
        _ shapes: [SequenceShape], headDim: Int, heads: Int = 6, kvHeads: Int = 2, blockLog2: Int32 = 4, seed: UInt64,
        only: Int? = nil, window: SequenceShape? = nil, slidingWindow: Int32 = 0
    ) -> (fast: [Float], slow: [Float]) {
        var rng = LCG(state: seed)
        let bs = 1 << Int(blockLog2), kvDim = kvHeads * headDim
        let rows = shapes.reduce(0) { $0 + $1.queries }
        let blocksPer = shapes.map { ($0.start + $0.queries + bs - 1) / bs }
        let totalBlocks = blocksPer.reduce(0, +)
        var ids = Array(0..<Int32(totalBlocks))
        for i in stride(from: ids.count - 1, to: 0, by: -1) { ids.swapAt(i, Int(rng.next().magnitude * 1e6) % (i + 1)) }
        let q = (0..<(rows * heads * headDim)).map { _ in rng.next() * 3 }
        let k = (0..<(totalBlocks * bs * kvDim)).map { _ in ck_fp32_to_fp16(rng.next() * 2) }
        let v = (0..<(totalBlocks * bs * kvDim)).map { _ in ck_fp32_to_fp16(rng.next()) }
        let pool = ck_pool_create(2)!
        defer { ck_pool_destroy(pool) }
        let longest = shapes.map { $0.start + $0.queries }.max()!
        let per = Int32(longest + headDim + 8)
        var scratch = [Float](repeating: 0, count: Int(per) * 2)
        var fast = [Float](repeating: .nan, count: q.count), slow = fast
        let scale = 1 / Float(headDim).squareRoot()
        ids.withUnsafeBufferPointer { table in
            var seqs: [ck_attn_seq] = []
            var row = 0, first = 0
            for (i, sh) in shapes.enumerated() {
                seqs.append(ck_attn_seq(n_q: Int32(sh.queries), row0: Int32(row), pos0: Int32(sh.start),
                                        blocks: table.baseAddress! + first))
                row += sh.queries
                first += blocksPer[i]
            }
            if let only { seqs = [seqs[only]] }
            if let window {
                seqs = [ck_attn_seq(n_q: Int32(window.queries), row0: Int32(window.start), pos0: Int32(window.start),
                                    blocks: table.baseAddress!)]
            }
            ck_attention(pool, q, &fast, Int32(seqs.count), seqs, k, v, blockLog2, Int32(heads), Int32(kvHeads),
                         Int32(headDim), scale, slidingWindow, &scratch, per)
            ck_attention_portable(pool, q, &slow, Int32(seqs.count), seqs, k, v, blockLog2, Int32(heads), Int32(kvHeads),
                                  Int32(headDim), scale, slidingWindow, &scratch, per)
        }
        return (fast, slow)
    }

    @Test(arguments: [(1, 64, 37), (5, 64, 12), (1, 40, 9), (3, 40, 30), (1, 36, 5), (4, 36, 1), (1, 128, 300)])
    func attentionMatchesPortable(queries: Int, headDim: Int, start: Int) {
        let (fast, slow) = Self.pagedAttention([(queries, start)], headDim: headDim, seed: UInt64(headDim * 1000 + start))
        #expect(fast.map(\.bitPattern) == slow.map(\.bitPattern))
        #expect(fast.allSatisfy { $0.isFinite })
    }

    /// Sliding-window layers: windows shorter than, equal to and longer than the context, starting
    /// inside a block and on a block boundary, on both paths; chunked prompts still equal whole ones.
    @Test(arguments: [Int32(1), 5, 16, 37, 64, 400])
    func slidingWindowAttentionMatchesPortable(window: Int32) {
        let shapes: [SequenceShape] = [(1, 70), (9, 0), (4, 33), (1, 15)]
        let (fast, slow) = Self.pagedAttention(shapes, headDim: 256, heads: 4, kvHeads: 1, seed: UInt64(window),
                                               slidingWindow: window)
        #expect(fast.map(\.bitPattern) == slow.map(\.bitPattern))
        #expect(fast.allSatisfy { $0.isFinite })
        let whole = Self.pagedAttention([(40, 0)], headDim: 64, seed: 5, slidingWindow: window).fast
        var rows: [Float] = []
        for (start, count) in [(0, 7), (7, 1), (8, 32)] {
            let width = 6 * 64
            let part = Self.pagedAttention([(40, 0)], headDim: 64, seed: 5, window: (count, start), slidingWindow: window).fast
            rows += part[(start * width)..<((start + count) * width)]
        }
        #expect(rows.map(\.bitPattern) == whole.map(\.bitPattern))
    }

    @Test func gegluMatchesPortableAndTanhGELU() {
        var rng = LCG(state: 3)
        let n = 1003
        var gate = (0..<n).map { _ in rng.next() * 12 }
        gate[0] = 0; gate[1] = -40; gate[2] = 40; gate[3] = -0.0
        let up = (0..<n).map { _ in rng.next() * 2 }
        var fast = [Float](repeating: 0, count: n), slow = fast
        ck_geglu(gate, up, &fast, Int32(n))
        ck_geglu_portable(gate, up, &slow, Int32(n))
        #expect(fast.map(\.bitPattern) == slow.map(\.bitPattern))
        for i in 0..<n {
            let g = Double(gate[i])
            let gelu = 0.5 * g * (1 + tanh((2 / Double.pi).squareRoot() * (g + 0.044715 * g * g * g)))
            let want = gelu * Double(up[i])
            #expect(abs(Double(fast[i]) - want) <= 4e-7 * max(1, abs(want)), "\(gate[i])")
        }
    }

    /// Several sequences in one call, blocks of 16 and 4 positions: each row equals the same row
    /// computed alone, and a prompt computed in chunks of any size equals it computed whole.
    @Test(arguments: [Int32(4), 2])
    func batchedAttentionEqualsEachRowAlone(blockLog2: Int32) {
        let shapes: [SequenceShape] = [(1, 40), (7, 0), (5, 20), (1, 3), (2, 61)]
        let (fast, slow) = Self.pagedAttention(shapes, headDim: 64, blockLog2: blockLog2, seed: 77)
        #expect(fast.map(\.bitPattern) == slow.map(\.bitPattern))
        #expect(fast.allSatisfy { $0.isFinite })
        // The same data with every sequence alone gives the same rows.
        var row = 0
        for (i, sh) in shapes.enumerated() {
            let alone = Self.pagedAttention(shapes, headDim: 64, blockLog2: blockLog2, seed: 77, only: i).fast
            let width = 6 * 64
            #expect(Array(alone[(row * width)..<((row + sh.queries) * width)]).map(\.bitPattern)
                    == Array(fast[(row * width)..<((row + sh.queries) * width)]).map(\.bitPattern), "sequence \(i)")
            row += sh.queries
        }
        // One sequence of 24 rows from position 0, whole and as chunks of 1, 5 and 8 rows (the same
        // seed gives the same q, K and V; the chunks see the positions their rows attend to).
        let whole = Self.pagedAttention([(24, 0)], headDim: 64, blockLog2: blockLog2, seed: 91).fast
        for chunk in [1, 5, 8] {
            var shapes: [SequenceShape] = []
            var start = 0
            while start < 24 { shapes.append((min(chunk, 24 - start), start)); start += chunk }
            var rows: [Float] = []
            for i in shapes.indices {
                let width = 6 * 64, r0 = shapes[..<i].reduce(0) { $0 + $1.queries }
                let part = Self.pagedAttention([(24, 0)], headDim: 64, blockLog2: blockLog2, seed: 91, window: shapes[i]).fast
                rows += part[(r0 * width)..<((r0 + shapes[i].queries) * width)]
            }
            #expect(rows.map(\.bitPattern) == whole.map(\.bitPattern), "chunks of \(chunk)")
        }
    }

    /// Activations quantize to the same bytes on every instruction set (ties, zeros, outliers, tiny values).
    @Test(arguments: [Int32(CK_TYPE_A8), Int32(CK_TYPE_A16)])
    func activationQuantizationMatchesPortable(type: Int32) {
        var rng = LCG(state: UInt64(type))
        let n = 32 * 40
        var x = (0..<n).map { _ in rng.next() * 7 }
        for i in 0..<32 { x[i] = 0 }                                   // an all-zero block
        for i in 32..<64 { x[i] = Float(i - 48) * 0.5 }                // halves: ties at both precisions' scale
        x[70] = 1e4; x[100] = -3e-38; x[130] = 1e-30                  // an outlier, denormal-adjacent values
        for i in 160..<192 { x[i] = Float(i % 3 == 0 ? 127 : -127) }  // exact quants
        let bytes = ck_row_bytes(type, Int32(n))
        var fast = [UInt8](repeating: 0, count: bytes), slow = fast
        ck_quantize_row(type, x, &fast, Int32(n))
        ck_quantize_row_portable(type, x, &slow, Int32(n))
        #expect(fast == slow)
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

    static let weightTypes = [Int32(CK_TYPE_Q4_1), Int32(CK_TYPE_Q8_0), Int32(CK_TYPE_Q4_0), Int32(CK_TYPE_Q5_0),
                              Int32(CK_TYPE_Q5_1), Int32(CK_TYPE_IQ4_NL), Int32(CK_TYPE_Q2_K), Int32(CK_TYPE_Q3_K),
                              Int32(CK_TYPE_Q4_K), Int32(CK_TYPE_Q5_K), Int32(CK_TYPE_Q6_K)]
    static let activationTypes = [Int32(CK_TYPE_A8), Int32(CK_TYPE_A16)]

    /// A matmul over plain (unpacked) rows on the pool gives exactly the single-row definition.
    @Test(arguments: weightTypes, activationTypes)
    func plainMatmulEqualsSingleRow(type: Int32, vt: Int32) {
        let k = 768, rows = 23
        let (wq, xq) = Self.operands(type: type, vt: vt, rows: rows, k: k, cols: 3, seed: UInt64(type))
        let rowBytes = ck_row_bytes(type, Int32(k)), xBytes = ck_row_bytes(vt, Int32(k))
        let pool = ck_pool_create(3)!
        defer { ck_pool_destroy(pool) }
        var y = [Float](repeating: 0, count: rows * 3)
        ck_matmul(pool, type, wq, rowBytes, Int32(rows), Int32(k), vt, xq, xBytes, 3, &y, Int32(rows))
        wq.withUnsafeBytes { wb in
            xq.withUnsafeBytes { xb in
                for c in 0..<3 {
                    for r in 0..<rows {
                        let single = ck_vec_dot(type, vt, Int32(k), wb.baseAddress! + r * rowBytes, xb.baseAddress! + c * xBytes)
                        #expect(single.bitPattern == y[c * rows + r].bitPattern, "row \(r) col \(c)")
                    }
                }
            }
        }
    }

    /// Quantized weights (`rows` rows of k) and activations (`cols` rows of k, type vt) from seeded data.
    static func operands(type: Int32, vt: Int32, rows: Int, k: Int, cols: Int, seed: UInt64) -> (w: [UInt8], x: [UInt8]) {
        var rng = LCG(state: seed)
        func quantized(_ t: Int32, _ n: Int, scale: Float) -> [UInt8] {
            let bytes = ck_row_bytes(t, Int32(k))
            var out = [UInt8](repeating: 0, count: bytes * n)
            out.withUnsafeMutableBytes { buf in
                for r in 0..<n {
                    var row = (0..<k).map { _ in rng.next() * scale }
                    if r == 1 { row[3] = scale * 40 }  // an outlier: the block's other quants are small
                    ck_quantize_row(t, row, buf.baseAddress! + r * bytes, Int32(k))
                }
            }
            return out
        }
        let w = randomlyFilledTypes.contains(type) ? randomQuantized(type, rows: rows, k: k, seed: seed) : quantized(type, rows, scale: 1)
        return (w, quantized(vt, cols, scale: 5))
    }

    /// The 8-row packed kernels, for every instruction set this CPU has (and the portable one), give
    /// exactly the single-row definition for any number of activation rows (odd block counts, 1 to 9
    /// activation rows, extreme quants): a row's result never depends on its batch.
    @Test(arguments: weightTypes, activationTypes)
    func packedMatmulEqualsSingleRow(type: Int32, vt: Int32) throws {
        let packedType = ck_packed_type(type)
        try #require(packedType >= 0)
        for (rows, k) in [(8, 256), (16, 512), (24, 768), (40, 256)] + (ck_type_block_elements(type) == 256 ? [] : [(8, 32), (16, 96), (40, 160)]) {
            for cols in [1, 2, 3, 4, 5, 7, 9] {
                for extreme in [false, true] {
                    var (w, x) = Self.operands(type: type, vt: vt, rows: rows, k: k, cols: cols, seed: UInt64(rows * 1000 + k + cols))
                    let rowBytes = ck_row_bytes(type, Int32(k)), xBytes = ck_row_bytes(vt, Int32(k))
                    if type == CK_TYPE_Q8_0 && extreme {
                        // Quants the quantizer never makes but a file may hold: -128 and +127 side by side.
                        for j in 0..<8 { w[2 + j] = 0x80; w[rowBytes + 2 + j] = 0x7F }
                    }
                    var packed = [UInt8](repeating: 0, count: w.count)
                    ck_pack_rows(type, w, rowBytes, Int32(rows), Int32(k), &packed)
                    for r in 0..<rows {
                        var back = [UInt8](repeating: 0, count: rowBytes)
                        ck_unpack_row(packedType, packed, Int32(k), Int32(r), &back)
                        #expect(back[...] == w[(r * rowBytes)..<((r + 1) * rowBytes)], "unpack row \(r)")
                    }
                    for isa in Int32(CK_ISA_GENERIC)...ck_isa() {
                        // Plain AVX2 has no exact product for a -128 weight (see packed.c).
                        if extreme && type == CK_TYPE_Q8_0 && isa == CK_ISA_AVX2 { continue }
                        var y = [Float](repeating: .nan, count: rows * cols)
                        ck_matmul_packed_isa(isa, packedType, packed, Int32(rows), Int32(k), vt, x, xBytes, Int32(cols), &y, Int32(rows))
                        w.withUnsafeBytes { wb in
                            x.withUnsafeBytes { xb in
                                for c in 0..<cols {
                                    for r in 0..<rows {
                                        let single = ck_vec_dot(type, vt, Int32(k), wb.baseAddress! + r * rowBytes, xb.baseAddress! + c * xBytes)
                                        #expect(single.bitPattern == y[c * rows + r].bitPattern,
                                                "isa \(isa) rows \(rows) k \(k) cols \(cols): row \(r) col \(c)")
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// A packed weight matrix multiplies and dequantizes like the matrix it was packed from.
    @Test func packedWeightMatrixBehavesLikeTheOriginal() throws {
        let type = Int32(CK_TYPE_Q4_1), rows = 32, k = 64
        let (w, x) = Self.operands(type: type, vt: ck_vec_dot_type(type), rows: rows, k: k, cols: 3, seed: 5)
        try w.withUnsafeBytes { wb in
            let m = try WeightMatrix(name: "w", type: .q4_1, rows: rows, columns: k, data: wb.baseAddress!)
            let p = m.packed()
            try #require(p.isPacked || ck_packed_type(type) < 0)
            var a = [Float](repeating: 0, count: k), b = a
            for r in [0, 7, 8, 31] {
                m.dequantizeRow(r, into: &a)
                p.dequantizeRow(r, into: &b)
                #expect(a == b, "row \(r)")
            }
            let pool = ThreadPool(threads: 2)
            var y0 = [Float](repeating: 0, count: rows * 3), y1 = y0
            x.withUnsafeBytes { xb in
                Ops.matmul(pool, m, quantized: xb.baseAddress!, count: 3, y: &y0, ldy: rows)
                Ops.matmul(pool, p, quantized: xb.baseAddress!, count: 3, y: &y1, ldy: rows)
            }
            #expect(y0.map(\.bitPattern) == y1.map(\.bitPattern))
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
