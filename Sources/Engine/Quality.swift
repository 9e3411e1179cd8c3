import Foundation
import Models

/// Per-token log-probabilities of a text corpus under an exact reference (the model's dequantized
/// weights in f32 with an f32 KV cache), with llama.cpp's own run on the quantized file beside it
/// (scripts/reference/make_quality_fixture.py).
public struct QualityFixture: Codable, Sendable {
    /// One model's view of a passage: for every position i (predicting token i + 1), the negative
    /// log-likelihood of the actual next token, the most likely token, and the log-probabilities of
    /// the exact reference's top tokens at that position (`Reference.topIDs`).
    public struct Run: Codable, Sendable {
        public var nll: [Double]
        public var top1: [Int]
        public var topLogprobs: [[Double]]

        public init(nll: [Double], top1: [Int], topLogprobs: [[Double]]) {
            self.nll = nll
            self.top1 = top1
            self.topLogprobs = topLogprobs
        }

        enum CodingKeys: String, CodingKey {
            case nll, top1
            case topLogprobs = "top_logprobs"
        }
    }

    public struct Passage: Codable, Sendable {
        public var name: String
        /// The passage's text; `tokenIDs` are llama.cpp's tokens of it.
        public var text: String?
        public var tokenIDs: [Int]
        /// The exact reference's most likely tokens at each position, most likely first.
        public var topIDs: [[Int]]
        public var exact: Run
        public var llamacpp: Run

        public init(name: String, text: String? = nil, tokenIDs: [Int], topIDs: [[Int]], exact: Run, llamacpp: Run) {
            self.name = name
            self.text = text
            self.tokenIDs = tokenIDs
            self.topIDs = topIDs
            self.exact = exact
            self.llamacpp = llamacpp
        }

        enum CodingKeys: String, CodingKey {
            case name, text, exact, llamacpp
            case tokenIDs = "token_ids"
            case topIDs = "top_ids"
        }
    }

    /// The model file's name and SHA-256.
    public var model: String
    public var modelSHA256: String?
    /// The llama.cpp build that made it.
    public var reference: String
    /// How the exact run was computed (llama.cpp on F32 weights, or the float64 NumPy pass).
    public var exactMethod: String?
    public var passages: [Passage]

    public init(model: String, modelSHA256: String? = nil, reference: String, passages: [Passage]) {
        self.model = model
        self.modelSHA256 = modelSHA256
        self.reference = reference
        self.passages = passages
    }

    enum CodingKeys: String, CodingKey {
        case model, reference, passages
        case modelSHA256 = "model_sha256"
        case exactMethod = "exact_method"
    }

    public static func load(path: String) throws -> QualityFixture {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let fixture = try JSONDecoder().decode(QualityFixture.self, from: data)
        try fixture.check()
        return fixture
    }

    /// Every array has one entry per position and every top list the same length.
    public func check() throws {
        guard !passages.isEmpty else { throw EngineError.invalidParameter("fixture", "has no passages") }
        for p in passages {
            let n = p.tokenIDs.count - 1
            guard n >= 1, p.topIDs.count == n, !p.topIDs.isEmpty,
                  [p.exact, p.llamacpp].allSatisfy({ run in
                      run.nll.count == n && run.top1.count == n && run.topLogprobs.count == n
                          && zip(run.topLogprobs, p.topIDs).allSatisfy { $0.count == $1.count } })
            else { throw EngineError.invalidParameter("fixture", "passage \(p.name): arrays do not match its tokens") }
        }
    }

    /// Positions scored over all passages.
    public var positions: Int { passages.reduce(0) { $0 + $1.tokenIDs.count - 1 } }
}

/// How close a model's next-token distributions are to the exact reference's, over a fixture.
public struct QualityMetrics: Codable, Sendable, Equatable {
    /// Scored positions.
    public var tokens: Int
    /// Mean over positions of |NLL(model) − NLL(exact)| of the actual next token, in nats.
    public var meanAbsDeltaNLL: Double
    /// Fraction of positions whose most likely token is the exact reference's.
    public var top1Agreement: Double
    /// Mean KL(exact ‖ model) in nats, approximated over the exact reference's top tokens plus one
    /// bucket for the rest of the vocabulary. Grouping tokens never increases a KL divergence (the
    /// log-sum inequality), so this is a lower bound on the full-vocabulary KL, tight when the top
    /// tokens hold most of the mass.
    public var approximateKL: Double
    /// exp of the mean NLL of the actual next tokens.
    public var perplexity: Double

    enum CodingKeys: String, CodingKey {
        case tokens, perplexity
        case meanAbsDeltaNLL = "mean_abs_delta_nll"
        case top1Agreement = "top1_agreement"
        case approximateKL = "approximate_kl"
    }

    /// Compares `run` with the fixture's exact run, passage by passage.
    public static func compare(_ runs: [QualityFixture.Run], with fixture: QualityFixture) -> QualityMetrics {
        precondition(runs.count == fixture.passages.count)
        var n = 0, agree = 0
        var dNLL = 0.0, kl = 0.0, nll = 0.0
        for (run, p) in zip(runs, fixture.passages) {
            let exact = p.exact
            for i in 0..<exact.nll.count {
                n += 1
                nll += run.nll[i]
                dNLL += abs(run.nll[i] - exact.nll[i])
                if run.top1[i] == exact.top1[i] { agree += 1 }
                kl += bucketedKL(exact: exact.topLogprobs[i], model: run.topLogprobs[i])
            }
        }
        let d = Double(max(n, 1))
        return QualityMetrics(tokens: n, meanAbsDeltaNLL: dNLL / d, top1Agreement: Double(agree) / d,
                              approximateKL: kl / d, perplexity: exp(nll / d))
    }

    /// KL over the given tokens plus a tail bucket holding the rest of each distribution's mass.
    static func bucketedKL(exact: [Double], model: [Double]) -> Double {
        var kl = 0.0, pHead = 0.0, qHead = 0.0
        for (lp, lq) in zip(exact, model) {
            let p = exp(lp)
            kl += p * (lp - lq)
            pHead += p
            qHead += exp(lq)
        }
        let pTail = max(0, 1 - pHead), qTail = max(1 - qHead, Double.leastNormalMagnitude)
        if pTail > 0 { kl += pTail * log(pTail / qTail) }
        return kl
    }
}

extension InferenceEngine {
    /// This engine's run over the fixture's passages, teacher-forced: each passage is one prompt through
    /// the model's forward pass with logits for every position, as the API's prompt log-probabilities.
    public func qualityRuns(_ fixture: QualityFixture) throws -> [QualityFixture.Run] {
        let vocab = model.config.vocabularySize
        var runs: [QualityFixture.Run] = []
        for p in fixture.passages {
            let tokens = p.tokenIDs
            guard tokens.count <= contextLength else {
                throw EngineError.contextLengthExceeded(promptTokens: tokens.count, maxTokens: 0, contextLength: contextLength)
            }
            for t in tokens + p.topIDs.joined() where t < 0 || t >= vocab {
                throw EngineError.invalidParameter("fixture", "token id \(t) out of range [0, \(vocab))")
            }
            let all = try logits(for: tokens)
            var run = QualityFixture.Run(nll: [], top1: [], topLogprobs: [])
            all.withUnsafeBufferPointer { buf in
                for i in 0..<(tokens.count - 1) {
                    let row = UnsafeBufferPointer(rebasing: buf[i * vocab..<(i + 1) * vocab])
                    let (logZ, best) = Self.logSumExpAndArgmax(row)
                    run.nll.append(logZ - Double(row[tokens[i + 1]]))
                    run.top1.append(best)
                    run.topLogprobs.append(p.topIDs[i].map { Double(row[$0]) - logZ })
                }
            }
            runs.append(run)
        }
        return runs
    }

    /// Swiftlet's closeness to the exact reference over the fixture.
    public func quality(_ fixture: QualityFixture) throws -> QualityMetrics {
        QualityMetrics.compare(try qualityRuns(fixture), with: fixture)
    }

    /// log Σ exp(row) in double precision, and the index of the largest entry (the first on ties).
    static func logSumExpAndArgmax(_ row: UnsafeBufferPointer<Float>) -> (Double, Int) {
        var best = 0
        for i in 1..<row.count where row[i] > row[best] { best = i }
        let m = Double(row[best])
        var sum = 0.0
        for l in row { sum += exp(Double(l) - m) }
        return (m + log(sum), best)
    }
}

extension QualityFixture {
    /// llama.cpp's own run on the quantized file, compared with exact.
    public var llamacppMetrics: QualityMetrics { QualityMetrics.compare(passages.map(\.llamacpp), with: self) }
    /// The exact reference compared with itself (its perplexity; zero error by construction).
    public var exactMetrics: QualityMetrics { QualityMetrics.compare(passages.map(\.exact), with: self) }
}
