import CKernels
import Foundation
import Kernels
import Testing

/// The sampling passes against their definitions by sorting.
@Suite struct SamplingKernelTests {
    static func logits(_ n: Int, seed: UInt64, ties: Bool = false) -> [Float] {
        var r = SeededRandom(state: seed)
        return (0..<n).map { _ in ties ? Float(Int(r.next() * 20)) : r.next() * 8 }
    }

    @Test(arguments: [(1, 1), (7, 3), (100, 1), (5000, 40), (5000, 256), (5000, 257), (5000, 1000), (49152, 4999), (300, 300)])
    func topKAndKthLargestMatchSorting(n: Int, k: Int) {
        for ties in [false, true] {
            let x = Self.logits(n, seed: UInt64(n * 31 + k), ties: ties)
            let order = x.indices.sorted { x[$0] != x[$1] ? x[$0] > x[$1] : $0 < $1 }
            var scratch = [Float](repeating: 0, count: n)
            #expect(ck_kth_largest(x, Int32(n), Int32(k), &scratch) == x[order[k - 1]])
            if k <= 256 {
                var idx = [Int32](repeating: 0, count: k), val = [Float](repeating: 0, count: k)
                #expect(ck_top_k(x, Int32(n), Int32(k), &idx, &val) == Int32(k))
                #expect(idx.map(Int.init) == Array(order.prefix(k)), "ties \(ties)")
                #expect(val == order.prefix(k).map { x[$0] })
            }
        }
    }

    @Test func maxAndArgmaxIgnoreMaskedTokens() {
        var x = Self.logits(1000, seed: 3)
        x[10] = 50
        x[700] = 50
        for i in 0..<10 { x[i] = -.infinity }
        #expect(ck_max_f32(x, 1000) == 50)
        #expect(ck_argmax_f32(x, 1000) == 10)
    }

    @Test(arguments: [1, 8, 255, 256, 257, 1000, 49152])
    func weightsSumAndPickAgreeWithAScan(n: Int) {
        let x = Self.logits(n, seed: UInt64(n))
        let m = x.max()!
        for (scale, cutoff) in [(Float(1), -Float.infinity), (0.5, m - 3), (2, m)] {
            var sums = [Float](repeating: 0, count: (n + 255) / 256)
            let total = ck_softmax_weights(x, Int32(n), m, scale, cutoff, &sums)
            let exact = x.reduce(0.0) { $0 + ($1 >= cutoff ? exp(Double(($1 - m) * scale)) : 0) }
            #expect(abs(total - exact) <= 1e-5 * exact)
            // Each quantile lands on the token whose cumulative weight interval holds it.
            var cumulative = [Double](), c = 0.0
            for v in x {
                c += v >= cutoff ? exp(Double((v - m) * scale)) : 0
                cumulative.append(c)
            }
            for q in stride(from: 0.001, to: 1, by: 0.0731) {
                let i = Int(ck_pick_weighted(x, Int32(n), m, scale, cutoff, sums, q * total))
                #expect(x[i] >= cutoff)
                let lo = i == 0 ? 0 : cumulative[i - 1]
                #expect(lo / exact <= q + 1e-4 && q - 1e-4 <= cumulative[i] / exact, "n \(n) q \(q): token \(i)")
            }
            let last = Int(ck_pick_weighted(x, Int32(n), m, scale, cutoff, sums, total))
            #expect(x[last] >= cutoff)
        }
    }

    @Test(arguments: [0.1, 0.5, 0.9, 0.95, 0.99, 0.999])
    func topPCutoffKeepsTheFewestHeaviestTokens(p: Double) {
        for (ties, scale) in [(false, Float(1)), (true, 1), (false, 1 / 0.7)] {
            let n = 4000
            let x = Self.logits(n, seed: 77, ties: ties)
            let m = x.max()!
            var w = [Float](repeating: 0, count: n), idx = [Int32](repeating: 0, count: n)
            let kept = Int(ck_top_p(x, Int32(n), m, scale, -.infinity, p, &w, &idx))
            let t = idx[0..<kept].map { x[Int($0)] }.min()!
            #expect(Set(idx[0..<kept]).count == kept)
            let weights = x.map { exp(Double(($0 - m) * scale)) }
            let total = weights.reduce(0, +)
            let keptMass = idx[0..<kept].reduce(0.0) { $0 + weights[Int($1)] }
            let above = zip(x, weights).filter { $0.0 > t }.reduce(0.0) { $0 + $1.1 }
            #expect(keptMass >= p * total * (1 - 1e-5), "p \(p): kept \(keptMass / total)")
            #expect(above < p * total * (1 + 1e-5), "p \(p): the tokens above the cutoff already reach p")
        }
        // Masked tokens and the cutoff of earlier filters are respected.
        var x = Self.logits(1000, seed: 5)
        x[3] = 100
        x[4] = -.infinity
        var w = [Float](repeating: 0, count: 1000), idx = [Int32](repeating: 0, count: 1000)
        let kept = ck_top_p(x, 1000, 100, 1, -.infinity, p, &w, &idx)
        #expect(kept == 1 && idx[0] == 3)
    }

    @Test func nucleusOfEqualWeights() {
        var w = [Float](repeating: 1, count: 100), idx = (0..<100).map(Int32.init)
        #expect(ck_nucleus(&w, &idx, 100, 10) == 10)
        #expect(ck_nucleus(&w, &idx, 100, 0) == 1)
        #expect(ck_nucleus(&w, &idx, 100, 1000) == 100)
    }
}
