import Engine
import Foundation
import GGUF
import Models
import SwiftletTesting
import Templates
import Testing

/// Reference outputs from llama.cpp (scripts/fixtures/make_generation_fixtures.py).
struct GenerationFixture: Decodable {
    struct Message: Decodable { var role: String; var content: String }
    struct Position: Decodable { var top_ids: [Int]; var top_logits: [Float] }
    struct Case: Decodable {
        var kind: String
        var prompt: String?
        var messages: [Message]?
        var rendered: String?
        var prompt_tokens: [Int]
        var generated: [Int]
        var positions: [Position]
        var text: String
    }
    struct Perplexity: Decodable { var file: String; var tokens: Int; var token_ids: [Int]; var ppl: Double }
    var reference: String
    var gen_tokens: Int
    var cases: [Case]
    var perplexity: Perplexity

    static let shared: GenerationFixture = {
        let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("generation.json")
        return try! JSONDecoder().decode(GenerationFixture.self, from: Data(contentsOf: url))
    }()
}

func modelEngine() throws -> InferenceEngine? {
    if TestModel.skipped { return nil }
    return try TestModel.engine()
}

@Suite(.serialized) struct ReferenceTests {
    static let fixture = GenerationFixture.shared

    @Test func fixtureCoversEnoughPrompts() {
        #expect(Self.fixture.cases.count >= 12)
        #expect(Set(Self.fixture.cases.map(\.kind)) == ["raw", "chat"])
        #expect(Self.fixture.reference == "llama-cpp-python==0.3.36")
    }

    /// Where two greedy outputs may part (vLLM's check_logprobs_close, with a margin): at the first position
    /// where the tokens differ, each side's token must be among the other's top 5 and the reference's top-2
    /// logit margin there at most `divergenceMargin`; nothing after that position is compared (the contexts
    /// differ from there on). Measured on these 896 positions (scripts/reference/measure_generation_error.py),
    /// llama.cpp's quantized argmax differs from exact arithmetic's at 23, all with margins <= 0.35; two
    /// implementations each that close to exact can disagree at twice that, so the margin is 0.75.
    static let divergenceMargin: Float = 0.75
    /// The largest difference accepted in a logit relative to the logit of the reference's top-1 (softmax
    /// ignores a constant added to all logits), over the reference's top-20, teacher-forced: twice llama.cpp's
    /// own largest distance from exact by the same measure at these positions (1.17, so 2.5).
    static let logitTolerance: Float = 2.5

    /// Checks `tokens` (with each position's top-5 `alternatives`) against a reference case. Returns the
    /// position of an accepted divergence, nil when the outputs are equal; records an issue otherwise.
    static func checkGreedy(_ tokens: [Int], alternatives: [[Int]], against c: GenerationFixture.Case,
                            sourceLocation: SourceLocation = #_sourceLocation) -> Int? {
        #expect(tokens.count == c.generated.count, sourceLocation: sourceLocation)
        for (i, (mine, ref)) in zip(tokens, c.generated).enumerated() where mine != ref {
            let refTop = c.positions[i].top_ids.prefix(5), refLogits = c.positions[i].top_logits
            let margin = refLogits[0] - refLogits[1]
            let why = "diverged at generated position \(i): \(mine) vs reference \(ref) (reference top-5 \(Array(refTop)), "
                + "ours \(alternatives[i]), reference margin \(margin))"
            #expect(refTop.contains(mine) && alternatives[i].prefix(5).contains(ref) && margin <= divergenceMargin,
                    Comment(rawValue: why), sourceLocation: sourceLocation)
            return i
        }
        return nil
    }

    /// Prompt tokens (tokenizer + chat template) equal the reference's, and the 64 greedy tokens follow
    /// the reference's up to a divergence that `checkGreedy` accepts.
    @Test(arguments: 0..<GenerationFixture.shared.cases.count)
    func greedyCloseToReference(index: Int) throws {
        guard let engine = try modelEngine() else { return }
        let c = Self.fixture.cases[index]
        let tokens: [Int]
        if c.kind == "chat" {
            let messages = (c.messages ?? []).map { ChatMessage(role: $0.role, content: $0.content) }
            #expect(try engine.renderChat(messages) == c.rendered)
            tokens = try engine.chatTokens(messages)
        } else {
            tokens = engine.encode(c.prompt ?? "")
        }
        #expect(tokens == c.prompt_tokens)
        let result = try engine.generate(GenerationRequest(
            promptTokens: c.prompt_tokens, maxTokens: Self.fixture.gen_tokens, ignoreEOS: true, logprobs: 5))
        #expect(result.finishReason == .length)
        _ = Self.checkGreedy(result.tokens, alternatives: result.logprobs.map { $0.top.map(\.token) }, against: c)
    }

    /// The tolerant comparison itself: equal outputs pass; a swap of the reference's top two where its
    /// margin is small passes; a swap where the margin is large, or a token outside the top 5, fails.
    @Test func greedyComparisonAcceptsOnlyCloseCalls() throws {
        let cases = Self.fixture.cases
        let c = cases[0]
        let top5 = c.positions.map { Array($0.top_ids.prefix(5)) }
        #expect(Self.checkGreedy(c.generated, alternatives: top5, against: c) == nil)
        let margins = c.positions.map { $0.top_logits[0] - $0.top_logits[1] }
        let flip = { (i: Int) -> ([Int], [[Int]]) in
            var t = c.generated, alt = top5
            t[i] = c.positions[i].top_ids[1]
            alt[i] = [t[i], c.generated[i]] + alt[i].filter { $0 != t[i] && $0 != c.generated[i] }.prefix(3)
            return (t, alt)
        }
        if let close = margins.firstIndex(where: { $0 <= Self.divergenceMargin }) {
            let (t, alt) = flip(close)
            #expect(Self.checkGreedy(t, alternatives: alt, against: c) == close)
        }
        let wide = try #require(margins.firstIndex { $0 > Self.divergenceMargin })
        let (t, alt) = flip(wide)
        withKnownIssue { _ = Self.checkGreedy(t, alternatives: alt, against: c) }
        var outside = c.generated
        outside[0] = c.positions[0].top_ids[7]
        withKnownIssue { _ = Self.checkGreedy(outside, alternatives: top5, against: c) }
    }

    /// Logits at every generated position are close to the reference's top-20 (relative to the top-1's). Like the reference, the
    /// prompt is one batch and each generated token one decode step (teacher-forced on the reference's
    /// tokens). The top-1 may differ only where the reference's margin allows a divergence.
    @Test(arguments: [0, 3, 9, 12])
    func logitsCloseToReference(index: Int) throws {
        guard let engine = try modelEngine() else { return }
        let c = Self.fixture.cases[index]
        let model = engine.model
        let cache = model.makeCache(capacity: c.prompt_tokens.count + c.generated.count)
        var logits: [Float] = []
        try model.forward(tokens: c.prompt_tokens, cache: cache, logits: .last, into: &logits)
        var maxDelta: Float = 0
        for (i, pos) in c.positions.enumerated() {
            let vocab = model.config.vocabularySize
            let argmax = (0..<vocab).max { logits[$0] < logits[$1] }!
            if argmax != pos.top_ids[0] {
                #expect(pos.top_logits[0] - pos.top_logits[1] <= Self.divergenceMargin
                        && pos.top_ids.prefix(5).contains(argmax), "generated position \(i): top-1 \(argmax)")
            }
            let base = logits[pos.top_ids[0]], refBase = pos.top_logits[0]
            for (id, value) in zip(pos.top_ids, pos.top_logits) {
                maxDelta = max(maxDelta, abs((logits[id] - base) - (value - refBase)))
            }
            try model.forward(tokens: [c.generated[i]], cache: cache, logits: .last, into: &logits)
        }
        #expect(maxDelta <= Self.logitTolerance, "max |Δ relative logit| = \(maxDelta)")
    }

    @Test func perplexityWithinOnePercent() throws {
        guard let engine = try modelEngine() else { return }
        let p = Self.fixture.perplexity
        #expect(p.token_ids.count == p.tokens && p.tokens >= 2000)
        let passage = try String(contentsOf: Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
            .appendingPathComponent(p.file), encoding: .utf8)
        #expect(Array(engine.encode(passage).prefix(p.tokens)) == p.token_ids)
        let ppl = try engine.perplexity(of: p.token_ids)
        #expect(abs(ppl - p.ppl) / p.ppl < 0.01, "perplexity \(ppl) vs reference \(p.ppl)")
    }
}
