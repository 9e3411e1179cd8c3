import Foundation
import Models

/// A request inside the batching engine: its tokens, KV blocks, sampling state and output.
final class EngineSequence {
    let id: UInt64
    let request: GenerationRequest
    let priority: Int
    /// Arrival order (FCFS among equal priorities; kept across preemption).
    let arrival: UInt64
    let promptCount: Int
    /// Prompt, then generated tokens; the last one is the next input once the prompt is computed.
    var tokens: [Int]
    /// Positions whose keys and values are in `blocks`.
    var computed = 0
    var blocks: [Int32] = []
    /// With a sliding-window pool: its blocks for the sliding-window layers, -1 where given back
    /// (positions every later row's window has passed).
    var slidingBlocks: [Int32] = []
    /// Leading blocks that are in the prefix cache (taken from it or registered), and the hash after them.
    var cachedBlocks = 0
    var prefixHash: UInt64 = 0
    /// Prompt tokens taken from the prefix cache at the last admission.
    var cachedPromptTokens = 0
    var sampler: Sampler
    /// The token sampled this step (and its logprob), before the output takes it.
    var sampled: (token: Int, logprob: TokenLogprob?) = (0, nil)
    var output: SequenceOutput
    var preemptions = 0
    var promptLogprobs: [TokenLogprob] = []
    /// An embedding request's vector, once its prompt is computed.
    var embedding: [Float]?
    let submitted: UInt64
    var firstToken: UInt64?
    let events: AsyncThrowingStream<GenerationEvent, Error>.Continuation

    init(id: UInt64, request: GenerationRequest, priority: Int, arrival: UInt64, output: SequenceOutput,
         events: AsyncThrowingStream<GenerationEvent, Error>.Continuation) {
        self.id = id
        self.request = request
        self.priority = priority
        self.arrival = arrival
        promptCount = request.promptTokens.count
        tokens = request.promptTokens
        sampler = Sampler(parameters: request.sampling)
        self.output = output
        submitted = DispatchTime.now().uptimeNanoseconds
        self.events = events
    }

    /// Whether `self` goes before `other`: higher priority first, then earlier arrival.
    func precedes(_ other: EngineSequence) -> Bool {
        priority != other.priority ? priority > other.priority : arrival < other.arrival
    }
}

/// One sequence's part of a step: `count` tokens from position `start`.
struct ScheduledChunk {
    let sequence: EngineSequence
    let start: Int
    let count: Int
    /// The chunk ends at the sequence's last token: sample from its logits.
    var wantsLogits: Bool { start + count == sequence.tokens.count }
}

/// Iteration-level scheduling (as in Orca and vLLM): every step takes one token from each running
/// sequence that is decoding, chunks of prompts still being computed, and new sequences in priority
/// then arrival order, within a token budget and a sequence limit. When KV blocks run out, the
/// running sequence that comes last in that order gives its blocks back and waits to be computed
/// again; since it keeps its place, nothing starves. Not thread-safe: the engine's loop owns it.
final class Scheduler {
    let pool: BlockPool
    /// Blocks of the sliding-window layers and their window, for models with such layers and split
    /// storage: a sequence holds only the blocks of its last window of positions.
    let sliding: (pool: BlockPool, window: Int)?
    let maxBatchTokens: Int
    let maxSequences: Int
    /// Prompt tokens per step of a request that wants logprobs for its prompt (one such chunk a step,
    /// as each of its tokens needs a row of logits).
    static let promptLogprobChunk = 64
    private(set) var waiting: [EngineSequence] = []
    private(set) var running: [EngineSequence] = []
    private(set) var preemptionCount = 0

    init(pool: BlockPool, sliding: (pool: BlockPool, window: Int)? = nil, maxBatchTokens: Int, maxSequences: Int) {
        self.pool = pool
        self.sliding = sliding
        self.maxBatchTokens = maxBatchTokens
        self.maxSequences = maxSequences
    }

    var isIdle: Bool { waiting.isEmpty && running.isEmpty }

    func enqueue(_ s: EngineSequence) {
        let i = waiting.firstIndex { s.precedes($0) } ?? waiting.endIndex
        waiting.insert(s, at: i)
    }

    /// Removes a sequence wherever it is and gives back its blocks.
    func remove(_ s: EngineSequence) {
        waiting.removeAll { $0 === s }
        running.removeAll { $0 === s }
        giveBack(s)
    }

    /// Releases all of `s`'s blocks and forgets what it computed.
    private func giveBack(_ s: EngineSequence) {
        pool.release(s.blocks)
        s.blocks = []
        sliding?.pool.release(s.slidingBlocks)
        s.slidingBlocks = []
        s.computed = 0
        s.cachedBlocks = 0
        s.prefixHash = 0
    }

    /// The next step's chunks.
    func schedule() -> [ScheduledChunk] {
        var chunks: [ScheduledChunk] = []
        var budget = maxBatchTokens
        var echoTaken = false
        /// Tokens `s` may compute this step.
        func share(_ s: EngineSequence) -> Int {
            let n = min(s.tokens.count - s.computed, budget)
            guard s.request.promptLogprobs && s.computed < s.promptCount else { return n }
            if echoTaken { return 0 }
            echoTaken = true
            return min(n, Self.promptLogprobChunk)
        }
        running.sort { $0.precedes($1) }
        var i = 0
        while i < running.count, budget > 0 {
            let s = running[i]
            let n = share(s)
            if n == 0 {
                i += 1
            } else if grow(s, to: s.computed + n) {
                chunks.append(ScheduledChunk(sequence: s, start: s.computed, count: n))
                budget -= n
                i += 1
            } else if !preemptLast(before: s) {
                preempt(s)  // it was the last: it waits itself
            }
        }
        while budget > 0, running.count < maxSequences, let s = waiting.first {
            if s.computed == 0 && s.blocks.isEmpty && !s.request.promptLogprobs {
                // At least the last token is always computed, to get its logits.
                let reusable = min(s.promptCount, s.tokens.count - 1) / pool.blockSize
                let (blocks, parents, hash) = pool.lookupPrefix(s.tokens, limit: reusable)
                let usable = takeSlidingPrefix(s, blocks: blocks.count, parents: parents)
                s.blocks = Array(blocks[..<usable])
                pool.release(Array(blocks[usable...]))
                s.cachedBlocks = usable
                s.prefixHash = usable == blocks.count ? hash : usable < parents.count ? parents[usable] : 0
                s.computed = usable * pool.blockSize
                s.cachedPromptTokens = s.computed
            }
            let n = share(s)
            guard n > 0, grow(s, to: s.computed + n) else {
                // Not enough free blocks to start it: it waits, holding nothing.
                giveBack(s)
                break
            }
            waiting.removeFirst()
            running.append(s)
            chunks.append(ScheduledChunk(sequence: s, start: s.computed, count: n))
            budget -= n
        }
        return chunks
    }

    /// After a step computed `chunk`: registers the prompt blocks it filled in the prefix cache (with
    /// their sliding-window blocks), then gives back the sliding-window blocks no later row will read.
    func completed(_ chunk: ScheduledChunk) {
        let s = chunk.sequence
        s.computed = chunk.start + chunk.count
        let bs = pool.blockSize
        // Only blocks made of prompt positions: generated ones use another attention layout.
        while (s.cachedBlocks + 1) * bs <= min(s.computed, s.promptCount) {
            let b = s.cachedBlocks
            let tokens = s.tokens[(b * bs)..<((b + 1) * bs)]
            if let sliding, s.slidingBlocks[b] >= 0 {
                sliding.pool.register(s.slidingBlocks[b], parent: s.prefixHash, tokens: tokens)
            }
            s.prefixHash = pool.register(s.blocks[b], parent: s.prefixHash, tokens: tokens)
            s.cachedBlocks += 1
        }
        if let sliding {
            // The next row, at position `computed`, reads from computed - window + 1 on.
            let passed = min(max(0, s.computed + 1 - sliding.window) / bs, s.slidingBlocks.count)
            for b in 0..<passed where s.slidingBlocks[b] >= 0 {
                sliding.pool.release([s.slidingBlocks[b]])
                s.slidingBlocks[b] = -1
            }
        }
    }

    /// Of a cached prefix of `blocks` blocks (with their parent hashes), how many can be used: those
    /// whose sliding-window blocks for the window before the first computed row are still cached too.
    /// Holds those sliding blocks and leaves -1 for the earlier ones.
    private func takeSlidingPrefix(_ s: EngineSequence, blocks: Int, parents: [UInt64]) -> Int {
        guard let sliding, blocks > 0 else { return blocks }
        let bs = pool.blockSize
        func slice(_ b: Int) -> ArraySlice<Int> { s.tokens[(b * bs)..<((b + 1) * bs)] }
        let found = (0..<blocks).map { sliding.pool.cachedBlock(parent: parents[$0], tokens: slice($0)) }
        var usable = blocks
        while usable > 0 {
            let first = max(0, usable * bs + 1 - sliding.window) / bs
            if (first..<usable).allSatisfy({ found[$0] != nil }) { break }
            usable -= 1
        }
        let first = max(0, usable * bs + 1 - sliding.window) / bs
        s.slidingBlocks = (0..<usable).map { $0 >= first ? found[$0]! : -1 }
        for b in s.slidingBlocks where b >= 0 { sliding.pool.hold(b) }
        return usable
    }

    /// Makes `s`'s blocks (and sliding-window blocks) cover `positions`; false if a pool ran out (it
    /// keeps what it got).
    private func grow(_ s: EngineSequence, to positions: Int) -> Bool {
        while s.blocks.count * pool.blockSize < positions {
            guard let b = pool.allocate() else { return false }
            s.blocks.append(b)
        }
        if let sliding {
            while s.slidingBlocks.count * pool.blockSize < positions {
                guard let b = sliding.pool.allocate() else { return false }
                s.slidingBlocks.append(b)
            }
        }
        return true
    }

    /// Preempts the running sequence that comes last, if it comes after `s`.
    private func preemptLast(before s: EngineSequence) -> Bool {
        guard let victim = running.last, victim !== s else { return false }
        preempt(victim)
        return true
    }

    private func preempt(_ s: EngineSequence) {
        running.removeAll { $0 === s }
        giveBack(s)
        s.preemptions += 1
        preemptionCount += 1
        enqueue(s)
    }
}
