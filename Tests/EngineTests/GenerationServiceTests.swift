import Engine
import Foundation
import SwiftletTesting
import Testing

/// Polls `condition` (the service works on its own thread); fails after a generous bound.
private func eventually(_ what: String, _ condition: () -> Bool) async throws {
    for _ in 0..<6000 {
        if condition() { return }
        try await Task.sleep(for: .milliseconds(10))
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

@Suite(.serialized) struct GenerationServiceTests {
    @Test func streamsStepsThenTheSameResultAsGenerate() async throws {
        guard let e = try engineOrSkip() else { return }
        let service = SerialGenerationService(engine: e)
        defer { service.shutdown() }
        let request = GenerationRequest(promptTokens: e.encode("The capital of France is"), maxTokens: 12, logprobs: 2)
        let (steps, result) = try await collect(try service.submit(request))
        let direct = try e.generate(request)
        let r = try #require(result)
        #expect(r.tokens == direct.tokens && r.text == direct.text && r.logprobs == direct.logprobs)
        #expect(steps.map(\.text).joined() == r.text)
        #expect(steps.compactMap(\.token) == r.tokens)
        #expect(service.stats == ServiceStats(running: 0, waiting: 0, cancelled: 0))
    }

    @Test func badRequestsAreRejectedAtSubmit() throws {
        guard let e = try engineOrSkip() else { return }
        let service = SerialGenerationService(engine: e)
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

    @Test func queueIsBoundedAndCancellingFreesTheSequences() async throws {
        guard let e = try engineOrSkip() else { return }
        let service = SerialGenerationService(engine: e, maxWaiting: 1)
        defer { service.shutdown() }
        let long = GenerationRequest(promptTokens: e.encode("Count: 1, 2, 3,"), maxTokens: 3000, ignoreEOS: true)
        let running = try service.submit(long)
        let consumer = Task {
            for try await _ in running {}
        }
        try await eventually("the first sequence to start") { service.stats.running == 1 }

        var waiting: AsyncThrowingStream<GenerationEvent, Error>? = try service.submit(long)
        #expect(service.stats.waiting == 1)
        #expect(throws: GenerationServiceError.queueFull(capacity: 1)) { try service.submit(long) }

        // Dropping a waiting stream takes it out of the queue: it never runs.
        waiting = nil
        #expect(waiting == nil)
        try await eventually("the waiting sequence to leave the queue") { service.stats.waiting == 0 }
        #expect(service.stats.cancelled == 1)

        // Cancelling the consumer of the running one stops it at its next token.
        consumer.cancel()
        _ = try? await consumer.value
        try await eventually("the running sequence to stop") { service.stats.running == 0 }
        #expect(service.stats.cancelled == 2)

        // The service goes on.
        let (_, result) = try await collect(try service.submit(GenerationRequest(promptTokens: e.encode("Hi"), maxTokens: 2)))
        #expect(result?.tokens.count == 2)
    }

    @Test func concurrentSubmissionsAreAllAnsweredInFullAndCorrectly() async throws {
        guard let e = try engineOrSkip() else { return }
        let service = SerialGenerationService(engine: e)
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

    @Test func shutdownFailsWaitingWorkAndStopsTheThread() async throws {
        guard let e = try engineOrSkip() else { return }
        let service = SerialGenerationService(engine: e, maxWaiting: 4)
        let long = GenerationRequest(promptTokens: e.encode("Count: 1, 2, 3,"), maxTokens: 40, ignoreEOS: true)
        let first = try service.submit(long)
        var it = first.makeAsyncIterator()
        _ = try await it.next()
        let second = try service.submit(long)
        service.shutdown()
        #expect(throws: GenerationServiceError.shuttingDown) { try service.submit(long) }
        await #expect(throws: GenerationServiceError.shuttingDown) { _ = try await collect(second) }
        // The running one finishes.
        var last: GenerationEvent?
        while let event = try await it.next() { last = event }
        guard case .finished(let r) = last else {
            Issue.record("no result")
            return
        }
        #expect(r.tokens.count == 40)
        service.waitUntilStopped()
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
