import Engine
import Foundation
import Models
import SwiftletTesting
import Templates
import Testing

/// The batching engine against the real model: whatever runs beside a request, it gets the tokens it
/// gets alone; blocks always come back; the prefix cache is used and changes nothing.
@Suite(.serialized) struct BatchEngineTests {
    static let prompts = [
        "The capital of France is", "def fibonacci(n):\n", "Once upon a time, in a small village by the sea,",
        "1, 2, 3, 5, 8, 13,", "Translate to French: I like green apples.\nFrench:", "The three primary colors are",
        "SELECT name, COUNT(*) FROM users", "日本の首都は", "A haiku about the ocean:", "List three fruits:",
        "The quick brown fox", "In 1969, astronauts", "To make bread, first", "The best way to learn Swift is",
        "Water boils at", "My favourite book is",
    ]

    /// Runs every request through `engine` at once; returns their results in order.
    static func runAll(_ engine: BatchEngine, _ requests: [GenerationRequest], priorities: [Int]? = nil) async throws
        -> [GenerationResult] {
        try await withThrowingTaskGroup(of: (Int, GenerationResult).self) { group in
            for (i, r) in requests.enumerated() {
                var r = r
                r.priority = priorities?[i] ?? 0
                let stream = try engine.submit(r)
                group.addTask {
                    var text = ""
                    for try await event in stream {
                        switch event {
                        case .step(let s): text += s.text
                        case .finished(let result):
                            #expect(result.text == text, "streamed text adds up to the result")
                            return (i, result)
                        }
                    }
                    throw CancellationError()
                }
            }
            var out = [GenerationResult?](repeating: nil, count: requests.count)
            for try await (i, r) in group { out[i] = r }
            return out.map { $0! }
        }
    }

    static func waitUntilIdle(_ engine: BatchEngine) async throws {
        for _ in 0..<500 {
            let s = engine.stats
            if s.running == 0 && s.waiting == 0 { return }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        Issue.record("engine did not become idle: \(engine.stats)")
    }

    func greedy(_ e: InferenceEngine, _ text: String, _ n: Int = 24) -> GenerationRequest {
        GenerationRequest(promptTokens: e.encode(text), maxTokens: n, ignoreEOS: true, logprobs: 2)
    }

    @Test func sixteenAtOnceEqualEachAlone() async throws {
        guard let e = try engineOrSkip() else { return }
        let requests = Self.prompts.map { greedy(e, $0) }
        let alone = try requests.map { try e.generate($0) }
        var options = BatchEngine.Options()
        options.kvCacheBytes = 64 << 20
        let engine = try BatchEngine(engine: e, options: options)
        defer { engine.shutdown() }
        let batched = try await Self.runAll(engine, requests)
        for i in requests.indices {
            #expect(batched[i].tokens == alone[i].tokens, "request \(i): \(Self.prompts[i])")
            #expect(batched[i].logprobs == alone[i].logprobs, "request \(i): logprobs to the bit")
        }
        // They really ran together: far fewer steps than the 16 x 24 tokens one at a time would take.
        #expect(engine.stats.steps < 100, "\(engine.stats.steps) steps")
        // Sampled requests too: the same seed gives the same tokens whatever runs beside.
        let sampled = Self.prompts.prefix(6).enumerated().map { i, p in
            GenerationRequest(promptTokens: e.encode(p), maxTokens: 16,
                              sampling: SamplingParameters(temperature: 0.9, topP: 0.95, seed: UInt64(i)), ignoreEOS: true)
        }
        let sampledAlone = try sampled.map { try e.generate($0).tokens }
        let sampledBatched = try await Self.runAll(engine, sampled + requests.prefix(6))
        for i in sampled.indices { #expect(sampledBatched[i].tokens == sampledAlone[i], "sampled \(i)") }
        try await Self.waitUntilIdle(engine)
        #expect(engine.stats.kvBlocksUsed == 0)
    }

    @Test func tinyPoolPreemptsAndEveryRequestCompletesCorrectly() async throws {
        guard let e = try engineOrSkip() else { return }
        let requests = Self.prompts.prefix(8).map { greedy(e, $0, 40) }
        let alone = try requests.map { try e.generate($0) }
        var options = BatchEngine.Options()
        // 6 blocks of 16 positions: one request needs up to 4, so eight cannot all fit.
        options.kvCacheBytes = 6 * KVBlockStorage.bytesPerBlock(layers: e.model.config.layerCount, kvDim: e.model.config.kvDim)
        options.prefixCaching = false
        let engine = try BatchEngine(engine: e, options: options)
        defer { engine.shutdown() }
        let batched = try await Self.runAll(engine, requests)
        for i in requests.indices {
            #expect(batched[i].tokens == alone[i].tokens, "request \(i)")
            #expect(batched[i].logprobs == alone[i].logprobs, "request \(i): logprobs to the bit after preemption")
        }
        try await Self.waitUntilIdle(engine)
        let stats = engine.stats
        #expect(stats.preemptions > 0, "the pool is too small for all of them: some must have been preempted")
        #expect(stats.kvBlocksUsed == 0)
        // A request that could never fit is refused up front, not left waiting.
        #expect(throws: EngineError.self) {
            _ = try engine.submit(GenerationRequest(promptTokens: e.encode("Hi"), maxTokens: 200))
        }
    }

    @Test func cancelledRequestsGiveTheirBlocksBack() async throws {
        guard let e = try engineOrSkip() else { return }
        var options = BatchEngine.Options()
        options.kvCacheBytes = 64 << 20
        let engine = try BatchEngine(engine: e, options: options)
        defer { engine.shutdown() }
        // Consumers that stop reading after a few tokens, and ones cancelled before they start. (2,000
        // tokens each: however loaded the machine, the engine cannot finish them before the consumers go.)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (i, p) in Self.prompts.prefix(8).enumerated() {
                let stream = try engine.submit(GenerationRequest(promptTokens: e.encode(p), maxTokens: 2000, ignoreEOS: true))
                group.addTask {
                    var seen = 0
                    for try await event in stream {
                        if case .step = event { seen += 1 }
                        if seen == 2 + i { break }
                    }
                }
            }
            try await group.waitForAll()
        }
        let never = Task {
            let stream = try engine.submit(GenerationRequest(promptTokens: e.encode("Hello"), maxTokens: 500, ignoreEOS: true))
            for try await _ in stream {}
        }
        never.cancel()
        _ = await never.result
        try await Self.waitUntilIdle(engine)
        let stats = engine.stats
        #expect(stats.kvBlocksUsed == 0, "every block is back in the pool: \(stats)")
        #expect(stats.cancelled >= 8)
    }

    @Test func sharedPrefixIsReusedAndChangesNothing() async throws {
        guard let e = try engineOrSkip() else { return }
        let system = "You are a careful assistant. " + String(repeating: "Answer briefly and precisely. ", count: 12)
        func chat(_ q: String) throws -> GenerationRequest {
            GenerationRequest(promptTokens: try e.chatTokens([ChatMessage(role: "system", content: system),
                                                              ChatMessage(role: "user", content: q)]),
                              maxTokens: 12, ignoreEOS: true, logprobs: 2)
        }
        let first = try chat("What is 2 + 2?"), second = try chat("Name a colour.")
        let aloneResult = try e.generate(second)
        let aloneSecond = aloneResult.tokens
        var options = BatchEngine.Options()
        options.kvCacheBytes = 64 << 20
        let engine = try BatchEngine(engine: e, options: options)
        defer { engine.shutdown() }
        _ = try await Self.runAll(engine, [first])
        let r = try await Self.runAll(engine, [second])[0]
        #expect(r.tokens == aloneSecond)
        #expect(r.logprobs == aloneResult.logprobs, "logprobs to the bit from the prefix cache")
        let blocks = second.promptTokens.count / 16
        #expect(r.cachedPromptTokens >= 16 * (blocks - 2), "most of the shared system prompt came from the cache")
        let stats = engine.stats
        #expect(stats.prefixHits > 0 && stats.prefixHitRate > 0)
        // The same request again: everything but its last block is cached.
        let again = try await Self.runAll(engine, [second])[0]
        #expect(again.tokens == aloneSecond)
        #expect(again.cachedPromptTokens == (second.promptTokens.count - 1) / 16 * 16)
        try await Self.waitUntilIdle(engine)
        #expect(engine.stats.kvBlocksUsed == 0)
    }

    @Test func promptLogprobsMatchTheSingleSequenceEngine() async throws {
        guard let e = try engineOrSkip() else { return }
        let prompt = e.encode(String(repeating: "one two three four five six seven eight nine ten ", count: 12))
        let request = GenerationRequest(promptTokens: prompt, maxTokens: 3, logprobs: 2, promptLogprobs: true)
        let alone = try e.generate(request)
        var options = BatchEngine.Options()
        options.kvCacheBytes = 64 << 20
        let engine = try BatchEngine(engine: e, options: options)
        defer { engine.shutdown() }
        let results = try await Self.runAll(engine, [request, greedy(e, "Hello there"), request])
        for r in [results[0], results[2]] {
            #expect(r.tokens == alone.tokens)
            #expect(r.promptLogprobs.count == prompt.count - 1)
            #expect(r.promptLogprobs == alone.promptLogprobs)
            #expect(r.logprobs == alone.logprobs)
        }
    }

    /// max_tokens 0 asks for the prompt only: with prompt logprobs they come back, nothing is sampled
    /// (this used to hit the "token after the end of generation" precondition and kill the process).
    @Test func zeroTokenRequestsSampleNothing() async throws {
        guard let e = try engineOrSkip() else { return }
        let prompt = e.encode("The capital of France is Paris, and the capital of Italy is Rome.")
        let echo = GenerationRequest(promptTokens: prompt, maxTokens: 0, logprobs: 1, promptLogprobs: true)
        let alone = try e.generate(GenerationRequest(promptTokens: prompt, maxTokens: 1, logprobs: 1, promptLogprobs: true))
        var options = BatchEngine.Options()
        options.kvCacheBytes = 64 << 20
        let engine = try BatchEngine(engine: e, options: options)
        defer { engine.shutdown() }
        let plain = GenerationRequest(promptTokens: prompt, maxTokens: 0)
        let results = try await Self.runAll(engine, [echo, plain, greedy(e, "Hello there", 4), echo])
        for r in [results[0], results[3]] {
            #expect(r.tokens.isEmpty && r.text.isEmpty && r.finishReason == .length)
            #expect(r.promptLogprobs == alone.promptLogprobs && r.promptLogprobs.count == prompt.count - 1)
        }
        #expect(results[1].tokens.isEmpty && results[1].promptLogprobs.isEmpty && results[1].finishReason == .length)
        #expect(results[2].tokens.count == 4)
        try await Self.waitUntilIdle(engine)
        #expect(engine.stats.kvBlocksUsed == 0)
    }

    @Test func higherPriorityRunsFirst() async throws {
        guard let e = try engineOrSkip() else { return }
        var options = BatchEngine.Options()
        options.kvCacheBytes = 64 << 20
        options.maxSequences = 1
        let engine = try BatchEngine(engine: e, options: options)
        defer { engine.shutdown() }
        let requests = (0..<4).map { greedy(e, Self.prompts[$0], 6) }
        // All four arrive before the engine takes any: the last has the highest priority.
        let results = try await Self.runAll(engine, requests, priorities: [0, 0, 0, 5])
        let order = results.indices.sorted { results[$0].timeToFirstToken < results[$1].timeToFirstToken }
        #expect(order.first == 3 || order.first == 0, "the first may already be running; then the urgent one is next")
        if order.first == 0 { #expect(order[1] == 3) }
    }
}

/// Gemma 3's sliding-window layers keep their keys and values in blocks of their own, given back as a
/// sequence's window moves on: batched, preempted and prefix-cached sequences still get exactly the
/// tokens and logprobs they get alone (where every layer keeps every position).
@Suite(.serialized) struct SlidingWindowEngineTests {
    static let long = String(repeating: "The tide comes in and the tide goes out, and the gulls follow the boats home. ", count: 40)

    @Test func slidingBlocksAreBoundedByTheWindowAndChangeNothing() async throws {
        guard !TestModel.skipped else { return }
        let e = try TestModel.engine(.gemma3)
        let window = try #require(e.model.slidingWindow)
        let prompts = [Self.long, "The capital of France is", "Once upon a time" + Self.long.prefix(1500),
                       String(Self.long.prefix(2000)) + " In the end,"]
        let requests = prompts.map {
            GenerationRequest(promptTokens: e.encode($0), maxTokens: 20, ignoreEOS: true, logprobs: 2)
        }
        #expect(requests[0].promptTokens.count > window + 200)
        let alone = try requests.map { try e.generate($0) }
        var options = BatchEngine.Options()
        options.kvCacheBytes = 256 << 20
        options.maxSequences = 4
        options.maxBatchTokens = 256
        // After every step, the sliding blocks in use (they must stay within each sequence's window plus a step).
        let peak = PeakCounter()
        let box = EngineBox()
        let engine = try BatchEngine(engine: e, options: options) { _ in
            if let engine = box.engine { peak.record(engine.stats.kvSlidingBlocksUsed) }
        }
        box.engine = engine
        defer { engine.shutdown() }
        let stats = engine.stats
        #expect(stats.kvSlidingBlocksTotal > 0, "the sliding-window layers have blocks of their own")
        let bs = stats.kvBlockSize
        let bound = options.maxSequences * ((window + bs - 1) / bs + 2) + options.maxBatchTokens / bs
        for round in 0..<2 {  // the second round takes the prompts' blocks from the prefix cache
            let batched = try await BatchEngineTests.runAll(engine, requests)
            for i in requests.indices {
                #expect(batched[i].tokens == alone[i].tokens, "round \(round) request \(i)")
                #expect(batched[i].logprobs == alone[i].logprobs, "round \(round) request \(i): logprobs to the bit")
            }
        }
        #expect(engine.stats.prefixHits > 0)
        #expect(peak.value > 0 && peak.value <= bound, "peak \(peak.value) of \(bound)")
        // A full pool would hold every position of the longest prompt in every layer.
        #expect(peak.value < requests.map(\.promptTokens.count).reduce(0, +) / bs)
        try await BatchEngineTests.waitUntilIdle(engine)
        #expect(engine.stats.kvBlocksUsed == 0 && engine.stats.kvSlidingBlocksUsed == 0)
    }

    @Test func preemptedSequencesRecomputeTheirWindow() async throws {
        guard !TestModel.skipped else { return }
        let e = try TestModel.engine(.gemma3)
        // Four prompts of ~2,100 tokens: more positions than the full-attention layers' blocks hold.
        let requests = (0..<4).map { i in
            GenerationRequest(promptTokens: e.encode("\(i). " + Self.long + Self.long + Self.long), maxTokens: 12,
                              ignoreEOS: true, logprobs: 1)
        }
        let alone = try requests.map { try e.generate($0) }
        var options = BatchEngine.Options()
        options.kvCacheBytes = 50 << 20  // the full-attention layers' blocks hold ~3,600 positions
        options.maxSequences = 4
        options.prefixCaching = false
        let engine = try BatchEngine(engine: e, options: options)
        defer { engine.shutdown() }
        let batched = try await BatchEngineTests.runAll(engine, requests)
        for i in requests.indices {
            #expect(batched[i].tokens == alone[i].tokens && batched[i].logprobs == alone[i].logprobs, "request \(i)")
        }
        #expect(engine.stats.kvSlidingBlocksTotal > 0 && engine.stats.preemptions > 0, "\(engine.stats) \(requests.map(\.promptTokens.count))")
        try await BatchEngineTests.waitUntilIdle(engine)
        #expect(engine.stats.kvBlocksUsed == 0 && engine.stats.kvSlidingBlocksUsed == 0)
    }
}

extension SlidingWindowEngineTests {
    /// A batch whose sliding-window table lacks a block of its window is refused, not read out of bounds.
    @Test func aSlidingTableMissingItsWindowIsRefused() throws {
        guard !TestModel.skipped else { return }
        let model = try TestModel.engine(.gemma3).model
        let storage = model.makeStorage(blocks: 48, slidingBlocks: 48, blockSize: 16)
        #expect(storage.isSplit && storage.sliding.filter { $0 }.count == model.slidingLayerCount)
        var logits = [Float](repeating: 0, count: model.config.vocabularySize)
        func run(start: Int, _ table: [Int32]) throws {
            var batch = ForwardBatch()
            batch.append([1, 2], as: BatchSequence(tokenCount: 2, startPosition: start, blockTable: Array(0..<48),
                                                   logitCount: 1, slidingBlockTable: table))
            try logits.withUnsafeMutableBufferPointer { try model.forward(batch, storage: storage, logits: $0.baseAddress!) }
        }
        // Positions 110 and 111 read blocks 0 to 6 of the window.
        for table: [Int32] in [[-1, -1, -1, -1, -1, -1, -1, 3], [0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5, 48]] {
            do {
                try run(start: 110, table)
                Issue.record("table \(table) was accepted")
            } catch {
                #expect("\(error)".contains("sliding-window block table"), "\(error)")
            }
        }
        // Positions 600 and 601 read from 89 on: blocks before 5 may be given back.
        try run(start: 600, [-1, -1, -1, -1, -1] + (5..<38).map(Int32.init))
    }
}

/// The engine, for its own step observer (set once it exists).
final class EngineBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: BatchEngine?
    var engine: BatchEngine? {
        get { lock.lock(); defer { lock.unlock() }; return value }
        set { lock.lock(); value = newValue; lock.unlock() }
    }
}

final class PeakCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var peak = 0
    func record(_ v: Int) { lock.lock(); peak = max(peak, v); lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return peak }
}
