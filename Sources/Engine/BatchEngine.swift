import Foundation
import Kernels
import Models
import Tokenizer

/// One step of the engine: sequences and tokens in the batch, and how long it took.
public struct StepReport: Sendable {
    public var sequences: Int
    public var tokens: Int
    public var decodeSequences: Int
    public var seconds: Double
}

/// Continuous batching over a paged KV cache with prefix caching: every step runs one forward pass
/// over the weights for all running sequences (a decode token each, plus chunks of prompts) and
/// samples their next tokens; requests join and leave between steps. One dedicated thread runs
/// the loop (generation is blocking CPU work), fed through a lock-protected inbox.
///
/// A request's greedy output does not depend on what it runs with: every token is computed the
/// same way alone or batched, from the prefix cache or after preemption.
public final class BatchEngine: GenerationService, @unchecked Sendable {
    // @unchecked: the mutable state under "inbox" is guarded by `condition`; the scheduler, pool and
    // sequences are touched only by the loop thread.
    public struct Options: Sendable {
        /// Bytes of KV cache (nil: an eighth of physical memory, at most 2 GiB). Pages are touched as
        /// blocks are first used, and blocks left in the prefix cache keep theirs until the pool needs
        /// them, so resident memory grows up to this size under varied traffic.
        public var kvCacheBytes: Int?
        public var blockSize = KVBlockStorage.defaultBlockSize
        /// Tokens per step (decode tokens plus prompt chunks).
        public var maxBatchTokens = 512
        /// Sequences running at once.
        public var maxSequences = 64
        /// Requests that may wait to start before `submit` throws `queueFull`.
        public var maxWaiting = 256
        public var prefixCaching = true

        public init() {}

        public static var defaultKVCacheBytes: Int {
            min(Int(ProcessInfo.processInfo.physicalMemory / 8), 2 << 30)
        }
    }

    public let engine: InferenceEngine
    public let options: Options
    /// Tokens of KV cache one request may use at most (prompt + generated).
    public let maxSequenceTokens: Int
    private let model: any LanguageModel
    private let storage: KVBlockStorage
    private let pool: BlockPool
    private let scheduler: Scheduler
    private let vocab: Int
    private let observer: (@Sendable (StepReport) -> Void)?
    /// Logit rows per step: one per running sequence, plus the prompt rows of an echo request.
    private let logitCapacity: Int

    // Inbox, guarded by `condition`.
    private let condition = NSCondition()
    private var inbox: [EngineSequence] = []
    private var cancels: [UInt64] = []
    private var lastID: UInt64 = 0
    private var queued = 0
    private var stopping = false
    private var stopped = false
    private var snapshot = ServiceStats(running: 0, waiting: 0)

    // Loop thread only.
    private var live: [UInt64: EngineSequence] = [:]
    private var cancelledCount = 0
    /// Sequences sampling this step and their logit rows; one scratch per pool thread.
    private var sampling: [(sequence: EngineSequence, row: UnsafeMutablePointer<Float>)] = []
    private let scratches: [SamplerScratch]

    public init(engine: InferenceEngine, options: Options = .init(), observer: (@Sendable (StepReport) -> Void)? = nil) throws {
        self.engine = engine
        self.options = options
        self.observer = observer
        model = engine.model
        vocab = model.config.vocabularySize
        guard options.blockSize > 0, options.blockSize & (options.blockSize - 1) == 0 else {
            throw EngineError.invalidParameter("block_size", "must be a power of two")
        }
        guard options.maxSequences > 0, options.maxBatchTokens > 0 else {
            throw EngineError.invalidParameter("max_sequences", "must be positive")
        }
        let bytes = options.kvCacheBytes ?? Options.defaultKVCacheBytes
        let bs = options.blockSize, layers = model.config.layerCount, kvDim = model.config.kvDim
        let perBlock = KVBlockStorage.bytesPerBlock(layers: layers, blockSize: bs, kvDim: kvDim)
        var blocks = bytes / perBlock
        guard blocks >= 1 else {
            throw EngineError.invalidParameter(
                "kv_cache_memory", "\(bytes) bytes hold no block of \(bs) tokens (\(perBlock) bytes)")
        }
        let batchTokens = min(options.maxBatchTokens, model.maxBatchTokens)
        // Sliding-window layers get blocks of their own: enough for every sequence's window plus a step's
        // new tokens, or half the memory if that is less (the scheduler preempts when they run out), when
        // that leaves the full-attention layers more positions than one pool would.
        var slidingPool: (pool: BlockPool, window: Int)?
        var storage: KVBlockStorage?
        if let window = model.slidingWindow {
            let slidingLayers = model.slidingLayerCount
            let perSliding = KVBlockStorage.bytesPerBlock(layers: slidingLayers, blockSize: bs, kvDim: kvDim)
            let perSequence = (window + bs - 1) / bs + 2, step = (batchTokens + bs - 1) / bs
            let slidingBlocks = min(options.maxSequences * perSequence + step, bytes / 2 / max(perSliding, 1))
            let slidingBytes = slidingBlocks * perSliding
            let fullBlocks = max(0, bytes - slidingBytes)
                / KVBlockStorage.bytesPerBlock(layers: layers - slidingLayers, blockSize: bs, kvDim: kvDim)
            if slidingLayers > 0, slidingLayers < layers, slidingBlocks >= perSequence + step, fullBlocks > blocks {
                blocks = fullBlocks
                storage = model.makeStorage(blocks: blocks, slidingBlocks: slidingBlocks, blockSize: bs)
                slidingPool = (BlockPool(capacity: slidingBlocks, blockSize: bs, prefixCaching: options.prefixCaching), window)
            }
        }
        self.storage = storage ?? model.makeStorage(blocks: blocks, blockSize: bs)
        pool = BlockPool(capacity: blocks, blockSize: bs, prefixCaching: options.prefixCaching)
        maxSequenceTokens = min(engine.contextLength, blocks * bs)
        scheduler = Scheduler(pool: pool, sliding: slidingPool, maxBatchTokens: batchTokens,
                              maxSequences: options.maxSequences)
        logitCapacity = options.maxSequences + Scheduler.promptLogprobChunk
        snapshot.kvBlocksTotal = blocks
        snapshot.kvSlidingBlocksTotal = slidingPool?.pool.capacity ?? 0
        snapshot.kvBlockSize = options.blockSize
        let vocabularySize = vocab
        scratches = (0..<engine.model.pool.threadCount).map { _ in SamplerScratch(vocabularySize: vocabularySize) }
        let thread = Thread { [self] in self.loop() }
        thread.name = "swiftlet-engine"
        thread.stackSize = 8 << 20
        thread.start()
    }

    public var stats: ServiceStats {
        condition.lock()
        var s = snapshot
        s.waiting += inbox.count
        condition.unlock()
        // Read when asked (a scrape), not at every step.
        s.expertTokens = model.expertRouting()
        return s
    }

    public func submit(_ request: GenerationRequest) throws -> AsyncThrowingStream<GenerationEvent, Error> {
        try engine.validate(request)
        guard request.promptTokens.count + request.maxTokens <= maxSequenceTokens else {
            throw EngineError.contextLengthExceeded(
                promptTokens: request.promptTokens.count, maxTokens: request.maxTokens, contextLength: maxSequenceTokens)
        }
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: GenerationEvent.self)
        let output = engine.makeOutput(request)
        condition.lock()
        defer { condition.unlock() }
        if stopping { throw GenerationServiceError.shuttingDown }
        guard queued < options.maxWaiting else { throw GenerationServiceError.queueFull(capacity: options.maxWaiting) }
        lastID += 1
        let id = lastID
        let sequence = EngineSequence(
            id: id, request: request, priority: request.priority, arrival: id,
            output: output, events: continuation)
        // Runs when the consumer goes away, and after the engine finishes the stream (then a no-op).
        continuation.onTermination = { [weak self] _ in self?.cancel(id) }
        inbox.append(sequence)
        queued += 1
        condition.signal()
        return stream
    }

    /// Stops taking requests; those not yet started fail with `shuttingDown`, running ones finish.
    public func shutdown() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until the loop thread has exited (after `shutdown()`).
    public func waitUntilStopped() {
        condition.lock()
        while !stopped { condition.wait() }
        condition.unlock()
    }

    private func cancel(_ id: UInt64) {
        condition.lock()
        cancels.append(id)
        condition.signal()
        condition.unlock()
    }

    // MARK: - The loop

    private func loop() {
        let logits = UnsafeMutablePointer<Float>.allocate(capacity: logitCapacity * vocab)
        defer { logits.deallocate() }
        let width = model.config.embeddingLength
        let hidden = UnsafeMutablePointer<Float>.allocate(capacity: logitCapacity * width)
        defer { hidden.deallocate() }
        var batch = ForwardBatch()
        while true {
            condition.lock()
            while inbox.isEmpty && cancels.isEmpty && scheduler.isIdle && !stopping { condition.wait() }
            let arrived = inbox, cancelled = cancels, stop = stopping
            inbox.removeAll()
            cancels.removeAll()
            condition.unlock()

            for s in arrived {
                live[s.id] = s
                // max_tokens 0 without prompt logprobs or an embedding: nothing to compute, it is done.
                if s.output.finish != nil && !s.request.promptLogprobs && !s.request.embedding {
                    finish(s)
                    continue
                }
                scheduler.enqueue(s)
            }
            for id in cancelled {
                guard let s = live[id] else { continue }
                s.output.cancel()
                finish(s)
            }
            if stop {
                for s in scheduler.waiting where s.computed == 0 && s.output.tokens.isEmpty {
                    fail(s, GenerationServiceError.shuttingDown)
                }
                if scheduler.isIdle { break }
            }
            let chunks = scheduler.schedule()
            guard !chunks.isEmpty else {
                // Nothing could be scheduled now (blocks still being given back): do not spin.
                publish(nil)
                condition.lock()
                _ = condition.wait(until: Date().addingTimeInterval(0.001))
                condition.unlock()
                continue
            }
            let start = DispatchTime.now().uptimeNanoseconds
            batch.removeAll()
            for c in chunks {
                let s = c.sequence
                let echo = s.request.promptLogprobs && c.start < s.promptCount
                batch.append(s.tokens[c.start..<(c.start + c.count)], as: BatchSequence(
                    tokenCount: c.count, startPosition: c.start, blockTable: s.blocks,
                    logitCount: echo ? c.count : (c.wantsLogits ? 1 : 0), slidingBlockTable: s.slidingBlocks,
                    hidden: s.request.embedding))
            }
            do {
                try model.forward(batch, storage: storage, logits: logits, hidden: hidden)
            } catch {
                for c in chunks { fail(c.sequence, error) }
                publish(nil)
                continue
            }
            var row = 0, hiddenRow = 0
            sampling.removeAll(keepingCapacity: true)
            for (c, entry) in zip(chunks, batch.sequences) {
                scheduler.completed(c)
                let s = c.sequence
                if entry.hidden {
                    if c.wantsLogits {
                        s.embedding = Array(UnsafeBufferPointer(start: hidden + hiddenRow * width, count: width))
                        finish(s)
                    }
                    hiddenRow += entry.logitCount
                    continue
                }
                if entry.logitCount > 1 || (entry.logitCount == 1 && s.request.promptLogprobs && c.start < s.promptCount) {
                    collectPromptLogprobs(s, chunk: c, rows: logits + row * vocab)
                }
                if c.wantsLogits {
                    // max_tokens 0 (prompt logprobs only): the prompt is done and nothing is sampled.
                    if s.output.finish != nil { finish(s) } else { sampling.append((s, logits + (row + entry.logitCount - 1) * vocab)) }
                }
                row += entry.logitCount
            }
            sampleAll()
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            let report = StepReport(
                sequences: chunks.count, tokens: batch.tokens.count,
                decodeSequences: chunks.filter { $0.start >= $0.sequence.promptCount }.count, seconds: seconds)
            publish(report)
        }
        publish(nil)
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    /// Prompt logprobs for the positions of `chunk` (row i predicts the token after position start + i).
    private func collectPromptLogprobs(_ s: EngineSequence, chunk c: ScheduledChunk, rows: UnsafeMutablePointer<Float>) {
        for i in 0..<c.count {
            let next = c.start + i + 1
            guard next < s.promptCount else { break }
            let lp = TokenLogprob.compute(
                UnsafeBufferPointer(start: rows + i * vocab, count: vocab), token: s.tokens[next], topN: s.request.logprobs ?? 0)
            s.promptLogprobs.append(lp)
        }
    }

    /// Samples every sequence of the step: grammar masks on this thread (matchers share caches), then
    /// penalties, sampling and logprobs in parallel on the pool, then the outputs in order.
    private func sampleAll() {
        for (s, row) in sampling { s.output.constrain(UnsafeMutableBufferPointer(start: row, count: vocab)) }
        let vocab = vocab, scratches = scratches
        model.pool.forEach(sampling.count) { [sampling] i, thread in
            let (s, row) = sampling[i]
            let logits = UnsafeMutableBufferPointer(start: row, count: vocab)
            s.sampler.applyPenalties(logits, context: s.tokens[...])
            let token = s.sampler.sample(UnsafeBufferPointer(logits), scratch: scratches[thread])
            s.sampled = (token, s.request.logprobs.map { TokenLogprob.compute(UnsafeBufferPointer(logits), token: token, topN: $0) })
        }
        for (s, _) in sampling { accept(s) }
    }

    private func accept(_ s: EngineSequence) {
        let (token, lp) = s.sampled
        if s.firstToken == nil { s.firstToken = DispatchTime.now().uptimeNanoseconds }
        if let step = s.output.accept(token, logprob: lp) {
            s.sampler.accept(token)
            s.tokens.append(token)
            if case .terminated = s.events.yield(.step(step)) { s.output.cancel() }
        }
        if s.output.finish != nil { finish(s) }
    }

    private func finish(_ s: EngineSequence) {
        let tail = s.output.flush()
        if !tail.isEmpty && s.output.finish != .cancelled { s.events.yield(.step(GenerationStep(token: nil, text: tail, logprob: nil))) }
        if s.output.finish == .cancelled { cancelledCount += 1 }
        scheduler.remove(s)
        live[s.id] = nil
        publish(nil)
        let now = DispatchTime.now().uptimeNanoseconds
        let ttft = s.firstToken.map { Double($0 - s.submitted) / 1e9 } ?? 0
        s.events.yield(.finished(GenerationResult(
            text: s.output.text, tokens: s.output.tokens, finishReason: s.output.finish ?? .length,
            promptTokenCount: s.promptCount, logprobs: s.output.logprobs, promptLogprobs: s.promptLogprobs,
            cachedPromptTokens: s.cachedPromptTokens, timeToFirstToken: ttft,
            duration: Double(now - s.submitted) / 1e9, embedding: s.embedding)))
        s.events.finish()
    }

    private func fail(_ s: EngineSequence, _ error: Error) {
        scheduler.remove(s)
        live[s.id] = nil
        publish(nil)
        s.events.finish(throwing: error)
    }

    private func publish(_ report: StepReport?) {
        var s = ServiceStats(running: scheduler.running.count, waiting: scheduler.waiting.count, cancelled: cancelledCount)
        s.preemptions = scheduler.preemptionCount
        s.kvBlocksTotal = pool.capacity
        s.kvBlocksUsed = pool.used
        s.kvBlocksCached = pool.cachedBlocks
        s.kvBlockSize = pool.blockSize
        s.kvSlidingBlocksTotal = scheduler.sliding?.pool.capacity ?? 0
        s.kvSlidingBlocksUsed = scheduler.sliding?.pool.used ?? 0
        s.prefixLookups = pool.lookups
        s.prefixHits = pool.hits
        condition.lock()
        s.steps = snapshot.steps + (report == nil ? 0 : 1)
        s.tokensComputed = snapshot.tokensComputed + (report?.tokens ?? 0)
        queued = inbox.count + s.waiting
        snapshot = s
        condition.unlock()
        if let report { observer?(report) }
    }
}
