import Engine
import Foundation
import SwiftletTesting
import Testing

/// Polls `condition` without suspending: once the test runs, it sees the service's state change even
/// while other tests keep Swift concurrency's threads busy. Fails after a generous bound.
func waitUntil(_ what: String, _ condition: () -> Bool) {
    for _ in 0..<120_000 {
        if condition() { return }
        usleep(1000)
    }
    Issue.record("never happened: \(what)")
}

private func collect(_ stream: AsyncThrowingStream<GenerationEvent, Error>) async throws -> (steps: [GenerationStep], result: GenerationResult?) {
    var steps: [GenerationStep] = []
    var result: GenerationResult?
    for try await event in stream {
        switch event {
        case .step(let s): steps.append(s)
        case .finished(let r): result = r
        }
    }
    return (steps, result)
}

/// The batching engine as a GenerationService: one sequence running at a time unless asked otherwise.
private func makeService(_ e: InferenceEngine, maxWaiting: Int = 64, maxSequences: Int = 1) throws -> BatchEngine {
    var options = BatchEngine.Options()
    options.kvCacheBytes = 256 << 20
    options.maxWaiting = maxWaiting
    options.maxSequences = maxSequences
    return try BatchEngine(engine: e, options: options)
}

private func idle(_ s: ServiceStats) -> Bool { s.running == 0 && s.waiting == 0 }

@Suite(.serialized) struct GenerationServiceTests {
    @Test func streamsStepsThenTheSameResultAsGenerate() async throws {
        guard let e = try engineOrSkip() else { return }
        let service = try makeService(e)
        defer { service.shutdown() }
        let request = GenerationRequest(promptTokens: e.encode("The capital of France is"), maxTokens: 12, logprobs: 2)
        let (steps, result) = try await collect(try service.submit(request))
        let direct = try e.generate(request)
        let r = try #require(result)
        #expect(r.tokens == direct.tokens && r.text == direct.text && r.logprobs == direct.logprobs)
        #expect(steps.map(\.text).joined() == r.text)
        #expect(steps.compactMap(\.token) == r.tokens)
        #expect(idle(service.stats) && service.stats.cancelled == 0 && service.stats.kvBlocksUsed == 0)
    }

    @Test func badRequestsAreRejectedAtSubmit() throws {
        guard let e = try engineOrSkip() else { return }
        let service = try makeService(e)
        defer { service.shutdown() }
        #expect(throws: EngineError.emptyPrompt) { try service.submit(GenerationRequest(promptTokens: [], maxTokens: 1)) }
        #expect(throws: EngineError.contextLengthExceeded(promptTokens: 1, maxTokens: Int.max, contextLength: e.contextLength)) {
            try service.submit(GenerationRequest(promptTokens: [1], maxTokens: Int.max))
        }
        #expect(throws: EngineError.self) {
            try service.submit(GenerationRequest(promptTokens: [1], maxTokens: 1, sampling: SamplingParameters(topP: 0)))
        }
        #expect(service.stats.waiting == 0)
    }

    @Test func queueIsBoundedAndDroppingAStreamCancelsItsSequence() async throws {
        guard let e = try engineOrSkip() else { return }
        let service = try makeService(e, maxWaiting: 1)
        defer { service.shutdown() }
        let long = GenerationRequest(promptTokens: e.encode("Count: 1, 2, 3,"), maxTokens: 4000, ignoreEOS: true)
        // Streams are released at the end of their scope at the latest: that is where they are dropped.
        do {
            let running = try service.submit(long)
            waitUntil("the first sequence to start") { service.stats.running == 1 }
            do {
                let waiting = try service.submit(long)
                #expect(service.stats.waiting == 1)
                #expect(throws: GenerationServiceError.queueFull(capacity: 1)) { try service.submit(long) }
                withExtendedLifetime(waiting) {}
            }
            // A waiting sequence whose stream goes away leaves the queue: it never runs.
            waitUntil("the dropped sequence to leave the queue") { service.stats.waiting == 0 && service.stats.cancelled == 1 }
            #expect(service.stats.running == 1)
            withExtendedLifetime(running) {}
        }
        // A running one stops at its next token.
        waitUntil("the running sequence to stop") { service.stats.running == 0 }
        #expect(service.stats.cancelled == 2)

        // The service goes on.
        let (_, result) = try await collect(try service.submit(GenerationRequest(promptTokens: e.encode("Hi"), maxTokens: 2)))
        #expect(result?.tokens.count == 2)
    }

    @Test func concurrentSubmissionsAreAllAnsweredInFullAndCorrectly() async throws {
        guard let e = try engineOrSkip() else { return }
        let service = try makeService(e, maxSequences: 4)
        defer { service.shutdown() }
        let prompts = (0..<6).map { "Item \($0):" }
        let expected = try prompts.map { try e.generate(GenerationRequest(promptTokens: e.encode($0), maxTokens: 6)).text }
        let got = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for (i, p) in prompts.enumerated() {
                let stream = try service.submit(GenerationRequest(promptTokens: e.encode(p), maxTokens: 6))
                group.addTask { (i, try await collect(stream).result?.text ?? "") }
            }
            var out = [String](repeating: "", count: prompts.count)
            for try await (i, text) in group { out[i] = text }
            return out
        }
        #expect(got == expected)
    }

    @Test func shutdownFailsWaitingWorkLetsTheRunningOneFinishAndStopsTheThread() async throws {
        guard let e = try engineOrSkip() else { return }
        let service = try makeService(e, maxWaiting: 4)
        let request = GenerationRequest(promptTokens: e.encode("Count: 1, 2, 3,"), maxTokens: 200, ignoreEOS: true)
        let first = try service.submit(request)
        waitUntil("the first sequence to start") { service.stats.running == 1 }
        let second = try service.submit(request)
        service.shutdown()
        #expect(throws: GenerationServiceError.shuttingDown) { try service.submit(request) }
        await #expect(throws: GenerationServiceError.shuttingDown) { _ = try await collect(second) }
        let (_, result) = try await collect(first)
        #expect(result?.tokens.count == 200 && result?.finishReason == .length)
        service.waitUntilStopped()
        #expect(idle(service.stats) && service.stats.cancelled == 0 && service.stats.kvBlocksUsed == 0)
    }

    @Test func promptLogprobsScoreEachPromptTokenAndLeaveGenerationUnchanged() throws {
        guard let e = try engineOrSkip() else { return }
        let prompt = e.encode("The capital of France is")
        let plain = try e.generate(GenerationRequest(promptTokens: prompt, maxTokens: 8, logprobs: 3))
        let echoed = try e.generate(GenerationRequest(promptTokens: prompt, maxTokens: 8, logprobs: 3, promptLogprobs: true))
        #expect(echoed.tokens == plain.tokens)
        #expect(echoed.promptLogprobs.count == prompt.count - 1)
        #expect(echoed.promptLogprobs.map(\.token) == Array(prompt.dropFirst()))
        #expect(echoed.promptLogprobs.allSatisfy { $0.logprob <= 0 && $0.top.count == 3 })
        // Position i's logprob is the log-softmax of the logits after the first i + 1 tokens.
        let all = try e.logits(for: prompt)
        let v = e.model.config.vocabularySize
        for (i, lp) in echoed.promptLogprobs.enumerated() {
            let reference = all.withUnsafeBufferPointer {
                TokenLogprob.compute(UnsafeBufferPointer(rebasing: $0[i * v..<(i + 1) * v]), token: prompt[i + 1], topN: 3)
            }
            #expect(lp == reference)
        }
        let none = try e.generate(GenerationRequest(promptTokens: prompt, maxTokens: 0, promptLogprobs: true))
        #expect(none.tokens.isEmpty && none.promptLogprobs.count == prompt.count - 1)
    }
}
