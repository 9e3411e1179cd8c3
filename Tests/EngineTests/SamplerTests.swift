import Engine
import Foundation
import Testing

@Suite struct SamplerTests {
    func sample(_ logits: [Float], _ p: SamplingParameters) -> Int {
        var s = Sampler(parameters: p)
        return logits.withUnsafeBufferPointer { s.sample($0, scratch: SamplerScratch(vocabularySize: logits.count)) }
    }

    @Test func greedyPicksArgmax() {
        #expect(sample([0.1, 3, -2, 2.9], SamplingParameters()) == 1)
        #expect(sample([-5, -4, -6], SamplingParameters()) == 1)
    }

    @Test func topKOneIsGreedy() {
        for seed in 0..<50 {
            #expect(sample([0.1, 3, -2, 2.9], SamplingParameters(temperature: 1.5, topK: 1, seed: UInt64(seed))) == 1)
        }
    }

    @Test func seedReproducesSequence() {
        let logits: [Float] = (0..<100).map { Float($0 % 7) * 0.3 }
        func run(_ seed: UInt64) -> [Int] {
            var s = Sampler(parameters: SamplingParameters(temperature: 1, seed: seed))
            let scratch = SamplerScratch(vocabularySize: logits.count)
            return (0..<50).map { _ in logits.withUnsafeBufferPointer { s.sample($0, scratch: scratch) } }
        }
        #expect(run(42) == run(42))
        #expect(run(42) != run(43))
    }

    @Test func samplingFollowsDistribution() {
        // p = softmax([0, ln 3]) = [0.25, 0.75]
        var s = Sampler(parameters: SamplingParameters(temperature: 1, seed: 7))
        let logits: [Float] = [0, Float(log(3.0))]
        var ones = 0
        let scratch = SamplerScratch(vocabularySize: 2)
        for _ in 0..<4000 where logits.withUnsafeBufferPointer({ s.sample($0, scratch: scratch) }) == 1 { ones += 1 }
        #expect(abs(Double(ones) / 4000 - 0.75) < 0.03)
    }

    @Test func topPKeepsNucleusOnly() {
        // probabilities ≈ [0.64, 0.24, 0.09, 0.03]: top_p 0.5 keeps only the first.
        let logits: [Float] = [3, 2, 1, 0]
        for seed in 0..<100 {
            #expect(sample(logits, SamplingParameters(temperature: 1, topP: 0.5, seed: UInt64(seed))) == 0)
        }
        var seen = Set<Int>()
        for seed in 0..<300 { seen.insert(sample(logits, SamplingParameters(temperature: 1, topP: 0.9, seed: UInt64(seed)))) }
        #expect(seen == [0, 1, 2])
    }

    @Test func minPDropsUnlikelyTokens() {
        let logits: [Float] = [3, 2, 1, 0]  // relative probs 1, .37, .14, .05
        var seen = Set<Int>()
        for seed in 0..<300 { seen.insert(sample(logits, SamplingParameters(temperature: 1, minP: 0.2, seed: UInt64(seed)))) }
        #expect(seen == [0, 1])
    }

    @Test func penaltiesAndBias() {
        var s = Sampler(parameters: SamplingParameters(repetitionPenalty: 2, frequencyPenalty: 0.5, presencePenalty: 0.25,
                                                       logitBias: [3: 10]))
        s.accept(1)
        s.accept(1)
        var logits: [Float] = [1, 4, -2, 0]
        logits.withUnsafeMutableBufferPointer { s.applyPenalties($0, context: [0, 2, 0][...]) }
        #expect(logits[0] == 0.5)  // positive logit divided by the repetition penalty
        #expect(logits[2] == -4)  // negative logit multiplied
        #expect(logits[1] == 4 - 2 * 0.5 - 0.25)  // generated twice: frequency and presence
        #expect(logits[3] == 10)
        #expect(logits.withUnsafeBufferPointer { s.sample($0, scratch: SamplerScratch(vocabularySize: 4)) } == 3)
    }

    /// Seeded pseudo-random logits shaped like a language model's: a few likely tokens, a long tail.
    static func lmLogits(_ n: Int, seed: UInt64) -> [Float] {
        var g = SeededGenerator(seed: seed)
        return (0..<n).map { _ in
            let u = Float(g.nextUnit())
            return u > 0.999 ? 8 + 4 * Float(g.nextUnit()) : -4 + 6 * u * u
        }
    }

    /// The tokens each setting may produce, by sorting the whole distribution (the definition).
    static func allowed(_ logits: [Float], _ p: SamplingParameters) -> (tokens: Set<Int>, probs: [Int: Double]) {
        let scaled = logits.map { Double($0) / Double(p.temperature) }
        let m = scaled.max()!
        var order = Array(scaled.indices).sorted { scaled[$0] != scaled[$1] ? scaled[$0] > scaled[$1] : $0 < $1 }
        if p.minP > 0 { order = order.filter { exp(scaled[$0] - m) >= Double(p.minP) * 0.999999 } }
        if p.topK > 0 {
            let kth = scaled[order[min(p.topK, order.count) - 1]]
            order = order.filter { scaled[$0] >= kth }
        }
        let total = order.reduce(0.0) { $0 + exp(scaled[$1] - m) }
        var kept: [Int] = [], mass = 0.0
        for t in order {
            kept.append(t)
            mass += exp(scaled[t] - m) / total
            if mass >= Double(p.topP) * 0.999999 { break }
        }
        let keptMass = kept.reduce(0.0) { $0 + exp(scaled[$1] - m) }
        return (Set(kept), Dictionary(uniqueKeysWithValues: kept.map { ($0, exp(scaled[$0] - m) / keptMass) }))
    }

    @Test(arguments: [
        SamplingParameters(temperature: 1, seed: 1),
        SamplingParameters(temperature: 0.7, topP: 0.9, seed: 2),
        SamplingParameters(temperature: 1, topP: 0.5, seed: 3),
        SamplingParameters(temperature: 1.3, topK: 40, seed: 4),
        SamplingParameters(temperature: 1, topK: 300, topP: 0.95, seed: 5),
        SamplingParameters(temperature: 0.8, minP: 0.05, seed: 6),
        SamplingParameters(temperature: 1, topK: 50, topP: 0.8, minP: 0.1, seed: 7),
    ])
    func samplesFollowTheTruncatedDistribution(_ p: SamplingParameters) {
        let logits = Self.lmLogits(5000, seed: p.seed!)
        let (tokens, probs) = Self.allowed(logits, p)
        var s = Sampler(parameters: p)
        let scratch = SamplerScratch(vocabularySize: logits.count)
        var counts: [Int: Int] = [:]
        let draws = 20000
        logits.withUnsafeBufferPointer { buf in
            for _ in 0..<draws { counts[s.sample(buf, scratch: scratch), default: 0] += 1 }
        }
        #expect(Set(counts.keys).isSubset(of: tokens), "sampled outside the allowed set")
        // Every token likelier than 1% appears at its frequency (binomial: 5 standard deviations).
        for (t, q) in probs where q > 0.01 {
            let f = Double(counts[t, default: 0]) / Double(draws)
            #expect(abs(f - q) < 5 * (q * (1 - q) / Double(draws)).squareRoot(), "token \(t): \(f) vs \(q)")
        }
    }

    @Test func maskedTokensAreNeverSampled() {
        var logits = Self.lmLogits(3000, seed: 9)
        for i in stride(from: 0, to: 3000, by: 2) { logits[i] = -.infinity }
        var s = Sampler(parameters: SamplingParameters(temperature: 1.5, topP: 0.99, seed: 1))
        let scratch = SamplerScratch(vocabularySize: logits.count)
        for _ in 0..<2000 {
            #expect(logits.withUnsafeBufferPointer { s.sample($0, scratch: scratch) } % 2 == 1)
        }
        let all = [Float](repeating: -.infinity, count: 10)
        #expect(all.withUnsafeBufferPointer { s.sample($0, scratch: scratch) } == 0)
    }

    @Test func invalidParametersAreRejected() {
        for p in [SamplingParameters(temperature: -1), SamplingParameters(topP: 0), SamplingParameters(topP: 1.5),
                  SamplingParameters(minP: 2), SamplingParameters(temperature: .nan), SamplingParameters(repetitionPenalty: 0),
                  SamplingParameters(frequencyPenalty: 3), SamplingParameters(logitBias: [99: 1]),
                  SamplingParameters(logitBias: [1: 1000])] {
            #expect(throws: EngineError.self) { try p.validate(vocabularySize: 10) }
        }
        #expect(throws: Never.self) { try SamplingParameters(temperature: 0.7, topK: 5, topP: 0.9).validate(vocabularySize: 10) }
    }

    @Test func logprobsAreNormalized() {
        let logits: [Float] = [1, 2, 3]
        let lp = logits.withUnsafeBufferPointer { TokenLogprob.compute($0, token: 2, topN: 2) }
        let z = log(exp(1.0) + exp(2.0) + exp(3.0))
        #expect(abs(Double(lp.logprob) - (3 - z)) < 1e-5)
        #expect(lp.top.map(\.token) == [2, 1])
    }
}

@Suite struct StopMatcherTests {
    @Test func findsStopAcrossChunks() {
        var m = StopMatcher(stops: ["END"])
        var out = ""
        var stopped = false
        for chunk in ["Hello E", "N", "D more"] {
            let (t, hit) = m.feed(chunk)
            out += t
            if hit { stopped = true; break }
        }
        #expect(stopped)
        #expect(out == "Hello ")
    }

    @Test func holdsBackPossiblePrefixThenReleases() {
        var m = StopMatcher(stops: ["</s>"])
        let (a, hitA) = m.feed("text <")
        #expect(a == "text " && !hitA)
        let (b, hitB) = m.feed("b>")
        #expect(b == "<b>" && !hitB)
        #expect(m.finish("tail <") == "tail <")
    }

    @Test func earliestOfSeveralStops() {
        var m = StopMatcher(stops: ["world", "lo"])
        let (t, hit) = m.feed("hello world")
        #expect(hit && t == "hel")
    }

    @Test func noStopsPassesThrough() {
        var m = StopMatcher(stops: [])
        #expect(m.feed("anything").0 == "anything")
    }
}
