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

    /// Prompt tokens (tokenizer + chat template) and 64 greedy tokens equal the reference's.
    @Test(arguments: 0..<GenerationFixture.shared.cases.count)
    func greedyMatchesReference(index: Int) throws {
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
            promptTokens: c.prompt_tokens, maxTokens: Self.fixture.gen_tokens, ignoreEOS: true))
        #expect(result.tokens == c.generated, "case \(index): \(c.prompt ?? c.rendered ?? "")")
        #expect(result.finishReason == .length)
    }

    /// Logits at every generated position agree with the reference's top-20. Like the reference, the prompt
    /// is one batch and each generated token one decode step (teacher-forced on the reference's tokens).
    @Test(arguments: [0, 3, 9, 12])
    func logitsMatchReference(index: Int) throws {
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
            #expect(argmax == pos.top_ids[0], "generated position \(i)")
            for (id, value) in zip(pos.top_ids, pos.top_logits) { maxDelta = max(maxDelta, abs(logits[id] - value)) }
            try model.forward(tokens: [c.generated[i]], cache: cache, logits: .last, into: &logits)
        }
        #expect(maxDelta < 1e-3, "max |Δlogit| = \(maxDelta)")
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
