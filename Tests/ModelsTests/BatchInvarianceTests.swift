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
    static let text = "Photosynthesis converts light energy into chemical energy. In plants, it happens in the "
        + "chloroplasts, where water is split and carbon dioxide is fixed into sugars. 光合作用"

    /// A model and the sequence whose logits are compared.
    struct Subject {
        let model: any LanguageModel
        let target: [Int]
        let vocab: Int
        /// Logits are compared at the target's last `compared` positions (all of SmolLM2's; Gemma's 262k-entry
        /// rows past its window only, where the window matters).
        let compared: Int

        init(_ name: TestModel.Name) throws {
            try self.init(engine: try TestModel.engine(name), long: name == .gemma3)
        }

        /// long: a target of 530 tokens (past a 512-token sliding window), compared at its last 24.
        init(engine e: InferenceEngine, long: Bool) throws {
            model = e.model
            vocab = model.config.vocabularySize
            var target = e.encode(BatchInvarianceTests.text)
            if long {
                while target.count < 530 { target += target.dropFirst() }
                target = Array(target.prefix(530))
            }
            self.target = target
            compared = long ? 24 : target.count
        }

        /// Logit rows wanted for the target's tokens start ..< start + n.
        func wanted(_ start: Int, _ n: Int) -> Int { max(0, min(n, start + n - (target.count - compared))) }

        /// The target alone in chunks of `chunk` tokens on `table`; the compared rows.
        func chunked(_ chunk: Int, _ storage: KVBlockStorage, _ table: [Int32]) throws -> [Float] {
            var got: [Float] = []
            var start = 0
            while start < target.count {
                let n = min(chunk, target.count - start)
                got += try run([(Array(target[start..<(start + n)]), start, table, wanted(start, n))], storage)[0]
                start += n
            }
            return got
        }
    }

    /// Blocks handed out in order from one storage; each sequence gets its own.
    final class Blocks {
        let storage: KVBlockStorage
        var next: Int32 = 0
        init(_ storage: KVBlockStorage) { self.storage = storage }
        func take(_ positions: Int) -> [Int32] {
            let n = (positions + storage.blockSize - 1) / storage.blockSize
            defer { next += Int32(n) }
            return (0..<Int32(n)).map { next + $0 }
        }
    }

    /// The reference is the target in the largest chunks the model takes (all of it, for SmolLM2).
    @Test(arguments: TestModel.Name.allCases)
    func chunksOfAnySizeGiveTheSameBits(_ name: TestModel.Name) throws {
        guard !TestModel.skipped else { return }
        let subject = try Subject(name)
        let target = subject.target, largest = subject.model.maxBatchTokens
        let storage = subject.model.makeStorage(blocks: 6 * (target.count / 16 + 1), blockSize: 16)
        let blocks = Blocks(storage)
        let reference = try subject.chunked(largest, storage, blocks.take(target.count))
        #expect(reference.count == subject.compared * subject.vocab && reference.allSatisfy { $0.isFinite })
        for chunk in [1, 3, 16, 17, min(target.count - 1, largest - 1)] {
            let got = try subject.chunked(chunk, storage, blocks.take(target.count))
            #expect(subject.firstDifference(got, reference) == nil, "chunks of \(chunk)")
        }
    }

    @Test(arguments: TestModel.Name.allCases, [1, 7, 63])
    func batchedWithOthersGivesTheSameBits(_ name: TestModel.Name, others: Int) throws {
        guard !TestModel.skipped else { return }
        let subject = try Subject(name)
        let target = subject.target, vocab = subject.vocab
        let storage = subject.model.makeStorage(blocks: 2 * (target.count / 16 + 1) + 2 * others, blockSize: 16)
        let blocks = Blocks(storage)
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

extension BatchInvarianceTests.Subject {
    /// Runs `parts` (tokens, start, block table, logit rows) as one batch; returns each part's logit rows.
    func run(_ parts: [(tokens: [Int], start: Int, table: [Int32], logits: Int)], _ storage: KVBlockStorage) throws -> [[Float]] {
        var batch = ForwardBatch()
        for p in parts {
            batch.append(p.tokens, as: BatchSequence(tokenCount: p.tokens.count, startPosition: p.start, blockTable: p.table,
                                                     logitCount: p.logits))
        }
        var out = [Float](repeating: .nan, count: max(1, batch.logitRows) * vocab)
        try out.withUnsafeMutableBufferPointer { try model.forward(batch, storage: storage, logits: $0.baseAddress!) }
        var rows: [[Float]] = []
        var offset = 0
        for p in parts {
            rows.append(Array(out[(offset * vocab)..<((offset + p.logits) * vocab)]))
            offset += p.logits
        }
        return rows
    }

    /// Where two logit arrays first differ in any bit (position, vocabulary index), or nil.
    func firstDifference(_ a: [Float], _ b: [Float]) -> String? {
        guard a.count == b.count else { return "\(a.count) values against \(b.count)" }
        for i in a.indices where a[i].bitPattern != b[i].bitPattern {
            return "value \(i) (row \(i / vocab)): \(a[i]) against \(b[i])"
        }
        return nil
    }
}
