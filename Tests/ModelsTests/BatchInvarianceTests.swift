import Engine
import Foundation
import Models
import SwiftletTesting
import Testing

/// A sequence's logits are the same bits however its tokens are batched: all at once, in prefill chunks
/// of any size, one token at a time (as decode runs them), and beside 1 to 63 other sequences at any
/// place in the batch. This is what makes greedy and seeded outputs independent of the server's load.
/// On every test model; Gemma 3's target is longer than its 512-token sliding window, so chunks and
/// decode rows past the window see only the window.
@Suite(.serialized) struct BatchInvarianceTests {
    static func subject(_ name: TestModel.Name) throws -> BatchInvarianceCheck {
        try BatchInvarianceCheck(engine: try TestModel.engine(name), long: name == .gemma3)
    }

    /// The reference is the target in the largest chunks the model takes (all of it, for SmolLM2).
    @Test(arguments: TestModel.Name.generative)
    func chunksOfAnySizeGiveTheSameBits(_ name: TestModel.Name) throws {
        guard !TestModel.skipped else { return }
        let subject = try Self.subject(name)
        let target = subject.target, largest = subject.model.maxBatchTokens
        let storage = subject.model.makeStorage(blocks: 6 * (target.count / 16 + 1), blockSize: 16)
        let blocks = BlockAllocator(storage)
        let reference = try subject.chunked(largest, storage, blocks.take(target.count))
        #expect(reference.count == subject.compared * subject.vocab && reference.allSatisfy { $0.isFinite })
        for chunk in [1, 3, 16, 17, min(target.count - 1, largest - 1)] {
            let got = try subject.chunked(chunk, storage, blocks.take(target.count))
            #expect(subject.firstDifference(got, reference) == nil, "chunks of \(chunk)")
        }
    }

    @Test(arguments: TestModel.Name.generative, [1, 7, 63])
    func batchedWithOthersGivesTheSameBits(_ name: TestModel.Name, others: Int) throws {
        guard !TestModel.skipped else { return }
        let subject = try Self.subject(name)
        let target = subject.target, vocab = subject.vocab
        let storage = subject.model.makeStorage(blocks: 2 * (target.count / 16 + 1) + 2 * others, blockSize: 16)
        let blocks = BlockAllocator(storage)
        let reference = try subject.chunked(subject.model.maxBatchTokens, storage, blocks.take(target.count))
        var rng = SystemRandomNumberGenerator()
        // The target's prompt as chunks (one when it fits beside the others) and then its last 6 tokens
        // one at a time, each step beside `others` sequences (prompt chunks and decode rows of their own),
        // the target at the front, in the middle or at the end of the batch.
        let prompt = target.count - 6, room = subject.model.maxBatchTokens - others * 5
        let table = blocks.take(target.count)
        let otherTables = (0..<others).map { _ in blocks.take(20) }
        var got: [Float] = []
        var start = 0, step = 0
        while start < target.count {
            let n = start < prompt ? min(prompt - start, room) : 1
            var parts: [(tokens: [Int], start: Int, table: [Int32], logits: Int)] = (0..<others).map { i in
                let len = others > 16 ? 1 : Int.random(in: 1...5, using: &rng)
                let pos = Int.random(in: 0...(20 - len), using: &rng)
                return ((0..<len).map { _ in Int.random(in: 0..<vocab, using: &rng) }, pos, otherTables[i],
                        Int.random(in: 0...len, using: &rng))
            }
            let at = [0, others / 2, others][step % 3]
            parts.insert((Array(target[start..<(start + n)]), start, table, subject.wanted(start, n)), at: at)
            got += try subject.run(parts, storage)[at]
            start += n
            step += 1
        }
        #expect(subject.firstDifference(got, reference) == nil, "\(others) others")
    }
}
