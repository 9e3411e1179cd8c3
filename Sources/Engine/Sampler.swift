import Foundation

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

/// Picks tokens from logits. Keeps its buffers between calls: no allocation per token after warm-up.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var rng: SeededGenerator
    private var counts: [Int: Int] = [:]
    private var heap: [(Float, Int32)] = []
    private var kept: [(Float, Int32)] = []

    public init(parameters: SamplingParameters) {
        self.parameters = parameters
        rng = SeededGenerator(seed: parameters.seed ?? UInt64.random(in: 0...UInt64.max))
    }

    /// Records a generated token (for frequency/presence penalties).
    public mutating func accept(_ token: Int) { counts[token, default: 0] += 1 }

    /// Applies penalties and bias to `logits` in place. `context` is prompt + output (repetition penalty).
    public func applyPenalties(_ logits: inout [Float], context: ArraySlice<Int>) {
        logits.withUnsafeMutableBufferPointer { applyPenalties($0, context: context) }
    }

    public func applyPenalties(_ logits: UnsafeMutableBufferPointer<Float>, context: ArraySlice<Int>) {
        let p = parameters
        if p.repetitionPenalty != 1 {
            let window = p.repetitionWindow > 0 ? context.suffix(p.repetitionWindow) : context
            var seen = Set<Int>()
            for t in window where seen.insert(t).inserted && t < logits.count {
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
    public mutating func sample(_ logits: UnsafeBufferPointer<Float>) -> Int {
        let p = parameters
        if p.temperature == 0 { return Self.argmax(logits) }
        // Candidates in a max-heap: pop only as many as top-k / top-p / min-p need.
        heap.removeAll(keepingCapacity: true)
        let invT = 1 / p.temperature
        for (i, l) in logits.enumerated() where l > -Float.infinity { heap.append((l * invT, Int32(i))) }
        guard !heap.isEmpty else { return Self.argmax(logits) }
        Self.heapify(&heap)
        let maxLogit = heap[0].0
        var total: Double = 0
        for (l, _) in heap { total += Double(Foundation.exp(l - maxLogit)) }
        kept.removeAll(keepingCapacity: true)
        var cumulative: Double = 0
        let limit = p.topK > 0 ? min(p.topK, heap.count) : heap.count
        let minProb = Double(p.minP)
        while kept.count < limit, !heap.isEmpty {
            let top = Self.popMax(&heap)
            let prob = Double(Foundation.exp(top.0 - maxLogit)) / total
            if !kept.isEmpty, prob < minProb { break }
            kept.append(top)
            cumulative += prob
            if cumulative >= Double(p.topP) { break }
        }
        var weights: Double = 0
        for (l, _) in kept { weights += Double(Foundation.exp(l - maxLogit)) }
        var r = rng.nextUnit() * weights
        for (l, t) in kept {
            r -= Double(Foundation.exp(l - maxLogit))
            if r < 0 { return Int(t) }
        }
        return Int(kept.last!.1)
    }

    public static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int {
        var best = 0
        var bestValue = -Float.infinity
        for (i, l) in logits.enumerated() where l > bestValue {
            bestValue = l
            best = i
        }
        return best
    }

    private static func heapify(_ h: inout [(Float, Int32)]) {
        var i = h.count / 2 - 1
        while i >= 0 {
            siftDown(&h, i)
            i -= 1
        }
    }

    private static func siftDown(_ h: inout [(Float, Int32)], _ start: Int) {
        var i = start
        let n = h.count
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < n, h[l].0 > h[m].0 { m = l }
            if r < n, h[r].0 > h[m].0 { m = r }
            if m == i { return }
            h.swapAt(i, m)
            i = m
        }
    }

    private static func popMax(_ h: inout [(Float, Int32)]) -> (Float, Int32) {
        let top = h[0]
        let last = h.removeLast()
        if !h.isEmpty {
            h[0] = last
            siftDown(&h, 0)
        }
        return top
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
        var maxL = -Float.infinity
        for l in logits where l > maxL { maxL = l }
        var sum: Double = 0
        for l in logits { sum += Double(Foundation.exp(l - maxL)) }
        let logZ = Float(Foundation.log(sum)) + maxL
        var top: [(Int, Float)] = []
        if topN > 0 {
            top.reserveCapacity(topN + 1)
            for (i, l) in logits.enumerated() where top.count < topN || l > top[top.count - 1].1 {
                var j = top.count
                top.append((i, l))
                while j > 0, top[j - 1].1 < l {
                    top.swapAt(j - 1, j)
                    j -= 1
                }
                if top.count > topN { top.removeLast() }
            }
        }
        return TokenLogprob(token: token, logprob: logits[token] - logZ, top: top.map { ($0.0, $0.1 - logZ) })
    }
}
