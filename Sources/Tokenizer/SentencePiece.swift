import HeapModule
/// SentencePiece-style BPE (`tokenizer.ggml.model = llama`): spaces are `▁`, the text is split into
/// UTF-8 characters and the adjacent pair whose concatenation is the vocabulary piece with the highest
/// score is merged until no pair forms a piece (leftmost first on ties). Characters that never became
/// a piece fall back to `<0xXX>` byte tokens.
struct SentencePieceModel: Sendable {
    let scores: [Float]
    /// Token for each byte: `<0xXX>`, else the one-byte piece, else -1.
    let byteToken: [Int32]
    let unknownToken: Int?

    init(tokens: [String], scores: [Float], textToID: [[UInt8]: Int], unknownToken: Int?) {
        self.scores = scores
        self.unknownToken = unknownToken
        let hex = Array("0123456789ABCDEF".utf8)
        var bt = [Int32](repeating: -1, count: 256)
        for b in 0..<256 {
            let name: [UInt8] = [0x3C, 0x30, 0x78, hex[b >> 4], hex[b & 15], 0x3E]  // <0xXX>
            if let id = textToID[name] {
                bt[b] = Int32(id)
            } else if let id = textToID[[UInt8(b)]] {
                bt[b] = Int32(id)
            }
        }
        byteToken = bt
    }

    /// A possible merge; the heap's minimum is the highest score, leftmost on ties.
    struct Candidate: Comparable {
        var score: Float
        var left: Int32
        var right: Int32
        var size: Int32

        @inline(__always)
        static func < (a: Candidate, b: Candidate) -> Bool {
            a.score > b.score || (a.score == b.score && a.left < b.left)
        }
    }

    /// Tokenizes already-escaped text (spaces replaced by `▁`).
    func encode(_ text: [UInt8], textToID: [[UInt8]: Int], into out: inout [Int]) {
        let n = text.count
        if n == 0 { return }
        // Symbols: UTF-8 characters as (start, length) into `text`.
        var start: [Int32] = []
        var len: [Int32] = []
        var prev: [Int32] = []
        var next: [Int32] = []
        var off = 0
        while off < n {
            let c = min(Self.utf8Length(text[off]), n - off)
            start.append(Int32(off))
            len.append(Int32(c))
            prev.append(Int32(start.count - 2))
            off += c
            next.append(off == n ? -1 : Int32(start.count))
        }
        var heap = Heap<Candidate>()
        func tryAdd(_ l: Int32, _ r: Int32) {
            if l < 0 || r < 0 { return }
            let s = Int(start[Int(l)])
            let e = s + Int(len[Int(l)] + len[Int(r)])
            guard let id = textToID[Array(text[s..<e])] else { return }
            heap.insert(Candidate(score: scores[id], left: l, right: r, size: Int32(e - s)))
        }
        for i in 1..<start.count { tryAdd(Int32(i - 1), Int32(i)) }
        while let c = heap.popMin() {
            let l = Int(c.left), r = Int(c.right)
            if len[l] == 0 || len[r] == 0 || len[l] + len[r] != c.size { continue }
            len[l] += len[r]
            len[r] = 0
            next[l] = next[r]
            if next[r] >= 0 { prev[Int(next[r])] = Int32(l) }
            tryAdd(prev[l], Int32(l))
            tryAdd(Int32(l), next[l])
        }
        var i: Int32 = 0
        while i >= 0 {
            let s = Int(start[Int(i)]), e = s + Int(len[Int(i)])
            if let id = textToID[Array(text[s..<e])] {
                out.append(id)
            } else {
                for b in text[s..<e] {
                    let t = byteToken[Int(b)]
                    if t >= 0 {
                        out.append(Int(t))
                    } else if let u = unknownToken {
                        out.append(u)
                    }
                }
            }
            i = next[Int(i)]
        }
    }

    @inline(__always)
    static func utf8Length(_ lead: UInt8) -> Int {
        switch lead >> 4 {
        case 0xC, 0xD: return 2
        case 0xE: return 3
        case 0xF: return 4
        default: return 1
        }
    }

}
