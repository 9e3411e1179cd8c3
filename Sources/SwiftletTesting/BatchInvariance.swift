import Engine
import Models

/// The shared per-model check of bitwise batch invariance (every architecture's tests run it): a target
/// sequence whose logits must be the same bits however it is chunked or batched.
public struct BatchInvarianceCheck {
    public static let text = "Photosynthesis converts light energy into chemical energy. In plants, it happens in the "
        + "chloroplasts, where water is split and carbon dioxide is fixed into sugars. 光合作用"

    public let model: any LanguageModel
    public let target: [Int]
    public let vocab: Int
    /// Logits are compared at the target's last `compared` positions (all of them; for a long target with
    /// a 262k-entry vocabulary, only the rows past a 512-token window, where the window matters).
    public let compared: Int

    /// long: a target of 530 tokens (past a 512-token sliding window), compared at its last 24.
    public init(engine e: InferenceEngine, long: Bool) throws {
        model = e.model
        vocab = model.config.vocabularySize
        var target = e.encode(Self.text)
        if long {
            while target.count < 530 { target += target.dropFirst() }
            target = Array(target.prefix(530))
        }
        self.target = target
        compared = long ? 24 : target.count
    }

    /// Logit rows wanted for the target's tokens start ..< start + n.
    public func wanted(_ start: Int, _ n: Int) -> Int { max(0, min(n, start + n - (target.count - compared))) }

    /// The target alone in chunks of `chunk` tokens on `table`; the compared rows.
    public func chunked(_ chunk: Int, _ storage: KVBlockStorage, _ table: [Int32]) throws -> [Float] {
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
public final class BlockAllocator {
    public let storage: KVBlockStorage
    var next: Int32 = 0
    public init(_ storage: KVBlockStorage) { self.storage = storage }
    public func take(_ positions: Int) -> [Int32] {
        let n = (positions + storage.blockSize - 1) / storage.blockSize
        defer { next += Int32(n) }
        return (0..<Int32(n)).map { next + $0 }
    }
}

extension BatchInvarianceCheck {
    /// Runs `parts` (tokens, start, block table, logit rows) as one batch; returns each part's logit rows.
    public func run(_ parts: [(tokens: [Int], start: Int, table: [Int32], logits: Int)], _ storage: KVBlockStorage) throws -> [[Float]] {
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
    public func firstDifference(_ a: [Float], _ b: [Float]) -> String? {
        guard a.count == b.count else { return "\(a.count) values against \(b.count)" }
        for i in a.indices where a[i].bitPattern != b[i].bitPattern {
            return "value \(i) (row \(i / vocab)): \(a[i]) against \(b[i])"
        }
        return nil
    }
}
