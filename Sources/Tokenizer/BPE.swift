import HeapModule
/// Byte-level BPE merging (GPT-2 style vocabularies, `tokenizer.ggml.model = gpt2`).
///
/// Symbols are identified by integers: vocabulary ids, plus ids above the vocabulary for strings that
/// appear in merges but are not tokens themselves. Merges are a dictionary keyed by the pair of symbol
/// ids, giving the rank and the merged symbol. A word is merged with a binary heap over a linked list
/// of symbols: lowest rank first, leftmost first on ties (as llama.cpp does).
struct BPEModel: Sendable {
    let vocabSize: Int
    /// (left << 32 | right) → (rank << 32 | merged symbol)
    let merges: [UInt64: UInt64]
    /// Symbol of each single byte.
    let byteSymbol: [Int32]
    /// Byte-encoded text (UTF-8) of symbols with id ≥ vocabSize.
    let extraTexts: [[UInt8]]
    /// Token id of a 1-byte vocabulary string for each byte, or -1 (fallback for unknown symbols).
    let singleByteToken: [Int32]
    /// llama3-style `ignore_merges`: a word that is a token as a whole is emitted directly.
    let ignoreMerges: Bool
    /// Raw bytes → token, for tokens whose text decodes through the byte map (used by `ignoreMerges`).
    let rawToToken: [[UInt8]: Int32]

    init(tokens: [String], textToID: [[UInt8]: Int], merges mergeStrings: [String], ignoreMerges: Bool) {
        vocabSize = tokens.count
        var extra: [[UInt8]] = []
        var extraIndex: [[UInt8]: Int32] = [:]
        let n = tokens.count
        func symbol(_ bytes: [UInt8]) -> Int32 {
            if let id = textToID[bytes] { return Int32(id) }
            if let e = extraIndex[bytes] { return e }
            let id = Int32(n + extra.count)
            extra.append(bytes)
            extraIndex[bytes] = id
            return id
        }
        var byteSym = [Int32](repeating: 0, count: 256)
        for b in 0..<256 { byteSym[b] = symbol(ByteEncoding.utf8ForByte[b]) }
        var table: [UInt64: UInt64] = [:]
        table.reserveCapacity(mergeStrings.count)
        for (rank, m) in mergeStrings.enumerated() {
            let u = Array(m.utf8)
            // Split at the first space after the first byte, like llama.cpp.
            var first: [UInt8] = []
            var second: [UInt8] = []
            if u.count > 1, let sp = u[1...].firstIndex(of: 0x20) {
                first = Array(u[..<sp])
                second = Array(u[(sp + 1)...])
            }
            let a = symbol(first), b = symbol(second)
            let key = UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
            if table[key] != nil { continue }  // first occurrence wins
            let r = symbol(first + second)
            table[key] = UInt64(rank) << 32 | UInt64(UInt32(bitPattern: r))
        }
        merges = table
        byteSymbol = byteSym
        extraTexts = extra
        var single = [Int32](repeating: -1, count: 256)
        for b in 0..<128 {
            if let id = textToID[[UInt8(b)]] { single[b] = Int32(id) }
        }
        singleByteToken = single
        self.ignoreMerges = ignoreMerges
        var raw: [[UInt8]: Int32] = [:]
        if ignoreMerges {
            raw.reserveCapacity(tokens.count)
            for (i, t) in tokens.enumerated() {
                if let bytes = ByteEncoding.decode(t) { raw[bytes] = Int32(i) }  // last wins, like token_to_id
            }
        }
        rawToToken = raw
    }

    /// Reusable per-call buffers.
    struct Scratch {
        var sym: [Int32] = []
        var prev: [Int32] = []
        var next: [Int32] = []
        var heap = Heap<Candidate>()
    }

    /// A possible merge; the heap's minimum is the lowest rank, leftmost on ties.
    struct Candidate: Comparable {
        var rank: Int32
        var left: Int32
        var right: Int32
        var leftSym: Int32
        var rightSym: Int32

        @inline(__always)
        static func < (a: Candidate, b: Candidate) -> Bool {
            a.rank < b.rank || (a.rank == b.rank && a.left < b.left)
        }
    }

    @inline(__always)
    private func lookup(_ a: Int32, _ b: Int32) -> UInt64? {
        merges[UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))]
    }

    /// Encodes one pre-tokenized word given as raw bytes.
    func encode(word: UnsafeBufferPointer<UInt8>, scratch s: inout Scratch, into out: inout [Int]) {
        let n = word.count
        if n == 0 { return }
        if ignoreMerges, let id = rawToToken[Array(word)] {
            out.append(Int(id))
            return
        }
        if n == 1 {
            emit(byteSymbol[Int(word[0])], into: &out)
            return
        }
        s.sym.removeAll(keepingCapacity: true)
        s.prev.removeAll(keepingCapacity: true)
        s.next.removeAll(keepingCapacity: true)
        if !s.heap.isEmpty { s.heap = Heap() }
        for i in 0..<n {
            s.sym.append(byteSymbol[Int(word[i])])
            s.prev.append(Int32(i - 1))
            s.next.append(i + 1 < n ? Int32(i + 1) : -1)
        }
        for i in 0..<(n - 1) {
            push(Int32(i), Int32(i + 1), &s)
        }
        while let c = s.heap.popMin() {
            let l = Int(c.left), r = Int(c.right)
            // Stale if either side changed since the candidate was queued (merged away or grown).
            if s.sym[l] != c.leftSym || s.sym[r] != c.rightSym || s.next[l] != c.right { continue }
            guard let m = lookup(c.leftSym, c.rightSym) else { continue }
            s.sym[l] = Int32(truncatingIfNeeded: m & 0xFFFF_FFFF)
            s.sym[r] = -1
            let rn = s.next[r]
            s.next[l] = rn
            if rn >= 0 { s.prev[Int(rn)] = Int32(l) }
            if s.prev[l] >= 0 { push(s.prev[l], Int32(l), &s) }
            if rn >= 0 { push(Int32(l), rn, &s) }
        }
        var i: Int32 = 0
        while i >= 0 {
            emit(s.sym[Int(i)], into: &out)
            i = s.next[Int(i)]
        }
    }

    @inline(__always)
    private func emit(_ sym: Int32, into out: inout [Int]) {
        if Int(sym) < vocabSize {
            out.append(Int(sym))
            return
        }
        // Not a token: fall back to single-byte tokens of its text, as llama.cpp does.
        for b in extraTexts[Int(sym) - vocabSize] where singleByteToken[Int(b)] >= 0 {
            out.append(Int(singleByteToken[Int(b)]))
        }
    }

    @inline(__always)
    private func push(_ l: Int32, _ r: Int32, _ s: inout Scratch) {
        let a = s.sym[Int(l)], b = s.sym[Int(r)]
        guard let m = lookup(a, b) else { return }
        let c = Candidate(rank: Int32(truncatingIfNeeded: m >> 32), left: l, right: r, leftSym: a, rightSym: b)
        s.heap.insert(c)
    }

}
