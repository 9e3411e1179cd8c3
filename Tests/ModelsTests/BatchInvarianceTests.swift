import Engine
import Foundation
import Models
import SwiftletTesting
import Testing

/// A sequence's logits are the same bits however its tokens are batched: all at once, in prefill chunks
/// of any size, one token at a time (as decode runs them), and beside 1 to 63 other sequences at any
/// place in the batch. This is what makes greedy and seeded outputs independent of the server's load.
@Suite(.serialized) struct BatchInvarianceTests {
    let model: any LanguageModel
    let target: [Int]
    let vocab: Int

    init() throws {
        let e = try TestModel.engine()
        model = e.model
        vocab = model.config.vocabularySize
        target = e.encode("Photosynthesis converts light energy into chemical energy. In plants, it happens in the "
                          + "chloroplasts, where water is split and carbon dioxide is fixed into sugars. 光合作用")
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

    /// The target's logits at every position, from one forward over the whole of it.
    func whole(_ storage: KVBlockStorage, _ blocks: Blocks) throws -> [Float] {
        try run([(target, 0, blocks.take(target.count), target.count)], storage)[0]
    }

    @Test func chunksOfAnySizeGiveTheSameBits() throws {
        guard !TestModel.skipped else { return }
        let storage = model.makeStorage(blocks: 64, blockSize: 16)
        let blocks = Blocks(storage)
        let reference = try whole(storage, blocks)
        #expect(reference.allSatisfy { $0.isFinite })
        for chunk in [1, 3, 16, 17, target.count - 1] {
            let table = blocks.take(target.count)
            var got: [Float] = []
            var start = 0
            while start < target.count {
                let n = min(chunk, target.count - start)
                got += try run([(Array(target[start..<(start + n)]), start, table, n)], storage)[0]
                start += n
            }
            #expect(firstDifference(got, reference) == nil, "chunks of \(chunk)")
        }
    }

    @Test(arguments: [1, 7, 63])
    func batchedWithOthersGivesTheSameBits(others: Int) throws {
        guard !TestModel.skipped else { return }
        let storage = model.makeStorage(blocks: 16 + 2 * others, blockSize: 16)
        let blocks = Blocks(storage)
        let reference = try whole(storage, blocks)
        var rng = SystemRandomNumberGenerator()
        // The target's prompt as one chunk and then its last tokens one at a time, each step beside
        // `others` sequences (prompt chunks and decode rows of their own), the target at the front, in
        // the middle or at the end of the batch.
        let split = target.count - 6
        let table = blocks.take(target.count)
        let otherTables = (0..<others).map { _ in blocks.take(20) }
        var got: [Float] = []
        var start = 0, step = 0
        while start < target.count {
            let n = start == 0 ? split : 1
            var parts: [(tokens: [Int], start: Int, table: [Int32], logits: Int)] = (0..<others).map { i in
                let len = others > 16 ? 1 : Int.random(in: 1...5, using: &rng)
                let pos = Int.random(in: 0...(20 - len), using: &rng)
                return ((0..<len).map { _ in Int.random(in: 0..<vocab, using: &rng) }, pos, otherTables[i],
                        Int.random(in: 0...len, using: &rng))
            }
            let at = [0, others / 2, others][step % 3]
            parts.insert((Array(target[start..<(start + n)]), start, table, n), at: at)
            got += try run(parts, storage)[at]
            start += n
            step += 1
        }
        #expect(firstDifference(got, reference) == nil, "\(others) others")
    }
}
