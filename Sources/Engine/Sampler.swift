import Foundation
import CKernels

/// How to pick the next token. Defaults are greedy decoding with no penalties.
public struct SamplingParameters: Sendable, Equatable {
    /// 0 means greedy (argmax).
    public var temperature: Float = 0
    public var topK: Int = 0
    public var topP: Float = 1
    public var minP: Float = 0
    /// Multiplicative penalty (llama.cpp/HF style) on tokens seen in prompt or output; 1 = off.
    public var repetitionPenalty: Float = 1
    /// OpenAI-style additive penalties on tokens already generated.
    public var frequencyPenalty: Float = 0
    public var presencePenalty: Float = 0
    /// Window of recent tokens the repetition penalty looks at (0 = all).
    public var repetitionWindow: Int = 64
    public var logitBias: [Int: Float] = [:]
    public var seed: UInt64?

    public init(
        temperature: Float = 0, topK: Int = 0, topP: Float = 1, minP: Float = 0, repetitionPenalty: Float = 1,
        frequencyPenalty: Float = 0, presencePenalty: Float = 0, logitBias: [Int: Float] = [:], seed: UInt64? = nil
    ) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        self.frequencyPenalty = frequencyPenalty
        self.presencePenalty = presencePenalty
        self.logitBias = logitBias
        self.seed = seed
    }

    public func validate(vocabularySize: Int) throws {
        func check(_ ok: Bool, _ field: String, _ message: String) throws {
            if !ok { throw EngineError.invalidParameter(field, message) }
        }
        try check(temperature.isFinite && temperature >= 0 && temperature <= 100, "temperature", "must be between 0 and 100")
        try check(topK >= 0, "top_k", "must be >= 0")
        try check(topP.isFinite && topP > 0 && topP <= 1, "top_p", "must be in (0, 1]")
        try check(minP.isFinite && minP >= 0 && minP <= 1, "min_p", "must be in [0, 1]")
        try check(repetitionPenalty.isFinite && repetitionPenalty > 0 && repetitionPenalty <= 10,
                  "repetition_penalty", "must be in (0, 10]")
        try check(frequencyPenalty.isFinite && abs(frequencyPenalty) <= 2, "frequency_penalty", "must be in [-2, 2]")
        try check(presencePenalty.isFinite && abs(presencePenalty) <= 2, "presence_penalty", "must be in [-2, 2]")
        for (t, b) in logitBias {
            try check(t >= 0 && t < vocabularySize, "logit_bias", "token id \(t) out of range [0, \(vocabularySize))")
            try check(b.isFinite && abs(b) <= 100, "logit_bias", "bias for token \(t) must be in [-100, 100]")
        }
    }
}

/// A small, fast, seedable generator (xoshiro256**), so a seed reproduces a sample on every platform.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var z = seed
        func splitmix() -> UInt64 {
            z &+= 0x9E37_79B9_7F4A_7C15
            var r = z
            r = (r ^ (r >> 30)) &* 0xBF58_476D_1CE4_E5B9
            r = (r ^ (r >> 27)) &* 0x94D0_49BB_1331_11EB
            return r ^ (r >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = (s.3 << 45) | (s.3 >> 19)
        return result
    }

    /// Uniform in [0, 1).
    public mutating func nextUnit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}

/// Vocabulary-sized buffers for sampling, one per thread that samples; reused for every token.
public final class SamplerScratch: @unchecked Sendable {
    // @unchecked: used by one thread at a time (the engine gives each pool thread its own).
    public let vocabularySize: Int
    let blockSums: UnsafeMutablePointer<Float>
    let weights: UnsafeMutablePointer<Float>
    let indices: UnsafeMutablePointer<Int32>

    public init(vocabularySize: Int) {
        self.vocabularySize = max(1, vocabularySize)
        blockSums = .allocate(capacity: (self.vocabularySize + Int(CK_SAMPLE_BLOCK) - 1) / Int(CK_SAMPLE_BLOCK))
        weights = .allocate(capacity: self.vocabularySize)
        indices = .allocate(capacity: self.vocabularySize)
    }

    deinit {
        blockSums.deallocate()
        weights.deallocate()
        indices.deallocate()
    }
}

/// Picks tokens from logits in a few linear passes over the vocabulary (no sort): temperature, then
/// min-p (relative to the most likely token), top-k and top-p (over what min-p and top-k leave,
/// renormalised) each raise one cutoff on the logits, and the token is drawn from the softmax of
/// those above it. A seed reproduces the same tokens.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var rng: SeededGenerator
    private var counts: [Int: Int] = [:]
    private var seen: Set<Int> = []

    public init(parameters: SamplingParameters) {
        self.parameters = parameters
        rng = SeededGenerator(seed: parameters.seed ?? UInt64.random(in: 0...UInt64.max))
    }

    /// Records a generated token (for frequency/presence penalties).
    public mutating func accept(_ token: Int) { counts[token, default: 0] += 1 }

    /// Applies penalties and bias to `logits` in place. `context` is prompt + output (repetition penalty).
    public mutating func applyPenalties(_ logits: UnsafeMutableBufferPointer<Float>, context: ArraySlice<Int>) {
        let p = parameters
        if p.repetitionPenalty != 1 {
            let window = p.repetitionWindow > 0 ? context.suffix(p.repetitionWindow) : context
            seen.removeAll(keepingCapacity: true)
            for t in window where t >= 0 && t < logits.count && seen.insert(t).inserted {
                logits[t] = logits[t] > 0 ? logits[t] / p.repetitionPenalty : logits[t] * p.repetitionPenalty
            }
        }
        if p.frequencyPenalty != 0 || p.presencePenalty != 0 {
            for (t, c) in counts where t < logits.count {
                logits[t] -= Float(c) * p.frequencyPenalty + p.presencePenalty
            }
        }
        for (t, b) in p.logitBias where t < logits.count { logits[t] += b }
    }

    /// Chooses the next token from already-penalized logits.
    public mutating func sample(_ logits: UnsafeBufferPointer<Float>, scratch: SamplerScratch) -> Int {
        let p = parameters
        guard let x = logits.baseAddress, logits.count > 0 else { return 0 }
        let n = Int32(min(logits.count, scratch.vocabularySize))
        if p.temperature == 0 { return Int(ck_argmax_f32(x, n)) }
        let maxLogit = ck_max_f32(x, n)
        guard maxLogit > -Float.infinity, maxLogit.isFinite else { return Int(ck_argmax_f32(x, n)) }
        let scale = 1 / p.temperature
        // p_i / p_max >= min_p  <=>  x_i >= max + T log(min_p).
        let minCutoff = p.minP > 0 ? maxLogit + p.temperature * Foundation.log(p.minP) : -Float.infinity
        let w = scratch.weights, idx = scratch.indices
        if p.topK > 0 && p.topK <= 256 && p.topK < Int(n) {
            // A short candidate list, sorted: min-p and top-p run over it alone.
            let c = Int(ck_top_k(x, n, Int32(p.topK), idx, w))
            var kept = 0, total = 0.0
            while kept < c && w[kept] >= minCutoff {
                w[kept] = Foundation.exp((w[kept] - maxLogit) * scale)
                total += Double(w[kept])
                kept += 1
            }
            if p.topP < 1 {
                var mass = 0.0, need = 0
                while need < kept && mass < Double(p.topP) * total {
                    mass += Double(w[need])
                    need += 1
                }
                (kept, total) = (max(need, 1), mass)
            }
            return draw(w, idx, kept, total)
        }
        var cutoff = minCutoff
        if p.topK > 0 && p.topK < Int(n) { cutoff = max(cutoff, ck_kth_largest(x, n, Int32(p.topK), w)) }
        if p.topP < 1 {
            let kept = Int(ck_top_p(x, n, maxLogit, scale, cutoff, Double(p.topP), w, idx))
            guard kept > 0 else { return Int(ck_argmax_f32(x, n)) }
            var total = 0.0
            for i in 0..<kept { total += Double(w[i]) }
            return draw(w, idx, kept, total)
        }
        let total = ck_softmax_weights(x, n, maxLogit, scale, cutoff, scratch.blockSums)
        guard total > 0, total.isFinite else { return Int(ck_argmax_f32(x, n)) }
        return Int(ck_pick_weighted(x, n, maxLogit, scale, cutoff, scratch.blockSums, rng.nextUnit() * total))
    }

    /// One of the first `count` tokens of `idx`, in proportion to their weights.
    private mutating func draw(_ w: UnsafeMutablePointer<Float>, _ idx: UnsafeMutablePointer<Int32>, _ count: Int, _ total: Double) -> Int {
        var r = rng.nextUnit() * total
        for i in 0..<count {
            r -= Double(w[i])
            if r < 0 { return Int(idx[i]) }
        }
        return Int(idx[max(count - 1, 0)])
    }

    public static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int {
        guard let x = logits.baseAddress, logits.count > 0 else { return 0 }
        return Int(ck_argmax_f32(x, Int32(logits.count)))
    }
}

/// Log-probabilities for the API's `logprobs`: the chosen token's and the top alternatives.
public struct TokenLogprob: Sendable, Equatable {
    public var token: Int
    public var logprob: Float
    public var top: [(token: Int, logprob: Float)]

    public static func == (a: TokenLogprob, b: TokenLogprob) -> Bool {
        a.token == b.token && a.logprob == b.logprob && a.top.map(\.token) == b.top.map(\.token)
    }

    /// Log-softmax of `logits` at `token`, with the `topN` most likely tokens.
    public static func compute(_ logits: UnsafeBufferPointer<Float>, token: Int, topN: Int) -> TokenLogprob {
        guard let x = logits.baseAddress, logits.count > 0 else { return TokenLogprob(token: token, logprob: -.infinity, top: []) }
        let n = Int32(logits.count)
        let maxL = ck_max_f32(x, n)
        let logZ = Float(Foundation.log(ck_softmax_weights(x, n, maxL, 1, -Float.infinity, nil))) + maxL
        var top: [(token: Int, logprob: Float)] = []
        if topN > 0 {
            let k = min(topN, logits.count)
            var ids = [Int32](repeating: 0, count: k), vals = [Float](repeating: 0, count: k)
            let c = Int(ck_top_k(x, n, Int32(k), &ids, &vals))
            top = (0..<c).map { (Int(ids[$0]), vals[$0] - logZ) }
        }
        return TokenLogprob(token: token, logprob: logits[token] - logZ, top: top)
    }
}
