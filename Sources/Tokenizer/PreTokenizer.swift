/// Pre-tokenizers of byte-level BPE vocabularies: they cut text into "words" before BPE runs.
///
/// Each one is a hand-written matcher over Unicode scalars that behaves like the regex
/// llama.cpp uses for the same `tokenizer.ggml.pre` (see llama-vocab.cpp / unicode.cpp).
/// A pre-tokenizer is a list of stages; every stage refines the pieces of the previous one and
/// never looks across a piece boundary (that is how llama.cpp applies several regexes in turn).
public enum PreTokenizerKind: String, Sendable, CaseIterable {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// `\p{N}` isolated, then the GPT-2 expression (smollm, starcoder, refact, command-r, …).
    case smollm
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    case llama3
    /// Like llama3 but with single digits: `\p{N}` instead of `\p{N}{1,3}`.
    case qwen2
    /// llama.cpp's fallback: `[\p{P}$+<=>^~|]+`, GPT-2, `\p{N}+`, `[0-9][0-9][0-9]`.
    case `default`
}

struct PreTokenizer {
    let kind: PreTokenizerKind

    /// Cuts `cp[0..<n]` into pieces; returns the exclusive end index (in scalars) of each piece.
    func split(_ cp: UnsafeBufferPointer<UInt32>, _ cls: UnsafeBufferPointer<UInt8>) -> [Int] {
        let n = cp.count
        if n == 0 { return [] }
        var ends = [n]
        switch kind {
        case .gpt2:
            ends = Self.stage(ends) { lo, hi, out in Self.gpt2(cp, cls, lo, hi, &out) }
        case .smollm:
            ends = Self.stage(ends) { lo, hi, out in Self.isolateEach(cls, lo, hi, CharClass.number, &out) }
            ends = Self.stage(ends) { lo, hi, out in Self.gpt2(cp, cls, lo, hi, &out) }
        case .llama3:
            ends = Self.stage(ends) { lo, hi, out in Self.llama3(cp, cls, lo, hi, maxDigits: 3, &out) }
        case .qwen2:
            ends = Self.stage(ends) { lo, hi, out in Self.llama3(cp, cls, lo, hi, maxDigits: 1, &out) }
        case .default:
            ends = Self.stage(ends) { lo, hi, out in Self.isolateRuns(cp, cls, lo, hi, Self.isDefaultPunct, &out) }
            ends = Self.stage(ends) { lo, hi, out in Self.gpt2(cp, cls, lo, hi, &out) }
            ends = Self.stage(ends) { lo, hi, out in
                Self.isolateRuns(cp, cls, lo, hi, { _, c in c & CharClass.number != 0 }, &out)
            }
            ends = Self.stage(ends) { lo, hi, out in Self.asciiDigitTriples(cp, lo, hi, &out) }
        }
        return ends
    }

    private static func stage(_ ends: [Int], _ body: (Int, Int, inout [Int]) -> Void) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(ends.count * 2)
        var lo = 0
        for hi in ends {
            body(lo, hi, &out)
            lo = hi
        }
        return out
    }

    @inline(__always)
    private static func emit(_ end: Int, _ last: inout Int, _ out: inout [Int]) {
        if end > last {
            out.append(end)
            last = end
        }
    }

    // MARK: Stages

    /// Every scalar with class `mask` is its own piece; the runs between them are pieces too.
    private static func isolateEach(_ cls: UnsafeBufferPointer<UInt8>, _ lo: Int, _ hi: Int, _ mask: UInt8,
                                    _ out: inout [Int]) {
        var last = lo
        for i in lo..<hi where cls[i] & mask != 0 {
            emit(i, &last, &out)
            emit(i + 1, &last, &out)
        }
        emit(hi, &last, &out)
    }

    /// Maximal runs of scalars satisfying `pred` are pieces; the runs between them are pieces too.
    private static func isolateRuns(_ cp: UnsafeBufferPointer<UInt32>, _ cls: UnsafeBufferPointer<UInt8>,
                                    _ lo: Int, _ hi: Int, _ pred: (UInt32, UInt8) -> Bool, _ out: inout [Int]) {
        var last = lo
        var i = lo
        while i < hi {
            if pred(cp[i], cls[i]) {
                emit(i, &last, &out)
                var j = i + 1
                while j < hi && pred(cp[j], cls[j]) { j += 1 }
                emit(j, &last, &out)
                i = j
            } else {
                i += 1
            }
        }
        emit(hi, &last, &out)
    }

    /// `[\p{P}\$\+<=>\^~\|]`
    private static func isDefaultPunct(_ v: UInt32, _ c: UInt8) -> Bool {
        if c & CharClass.whitespace != 0 { return false }
        if c & CharClass.punctuation != 0 { return true }
        switch v {
        case 0x24, 0x2B, 0x3C, 0x3D, 0x3E, 0x5E, 0x7E, 0x7C: return true  // $ + < = > ^ ~ |
        default: return false
        }
    }

    /// `[0-9][0-9][0-9]` searched left to right; matches and gaps are pieces.
    private static func asciiDigitTriples(_ cp: UnsafeBufferPointer<UInt32>, _ lo: Int, _ hi: Int,
                                          _ out: inout [Int]) {
        @inline(__always) func digit(_ i: Int) -> Bool { cp[i] >= 0x30 && cp[i] <= 0x39 }
        var last = lo
        var i = lo
        while i + 3 <= hi {
            if digit(i) && digit(i + 1) && digit(i + 2) {
                emit(i, &last, &out)
                emit(i + 3, &last, &out)
                i += 3
            } else {
                i += 1
            }
        }
        emit(hi, &last, &out)
    }

    @inline(__always)
    private static func asciiLower(_ v: UInt32) -> UInt32 {
        (v >= 0x41 && v <= 0x5A) ? v + 0x20 : v
    }

    /// Contraction at `pos` (`'s 't 'm 'd 're 've 'll`): its length, or 0.
    @inline(__always)
    private static func contraction(_ cp: UnsafeBufferPointer<UInt32>, _ pos: Int, _ hi: Int,
                                    caseInsensitive: Bool) -> Int {
        guard cp[pos] == 0x27, pos + 1 < hi else { return 0 }  // '
        let a = caseInsensitive ? asciiLower(cp[pos + 1]) : cp[pos + 1]
        switch a {
        case 0x73, 0x74, 0x6D, 0x64: return 2  // s t m d
        default: break
        }
        guard pos + 2 < hi else { return 0 }
        let b = caseInsensitive ? asciiLower(cp[pos + 2]) : cp[pos + 2]
        if (a == 0x72 && b == 0x65) || (a == 0x76 && b == 0x65) || (a == 0x6C && b == 0x6C) { return 3 }  // re ve ll
        return 0
    }

    /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    private static func gpt2(_ cp: UnsafeBufferPointer<UInt32>, _ cls: UnsafeBufferPointer<UInt8>,
                             _ lo: Int, _ hi: Int, _ out: inout [Int]) {
        let L = CharClass.letter, N = CharClass.number, S = CharClass.whitespace
        @inline(__always) func at(_ i: Int) -> UInt8 { i < hi ? cls[i] : 0 }
        var last = lo
        var pos = lo
        while pos < hi {
            let c = cp[pos]
            let k = contraction(cp, pos, hi, caseInsensitive: false)
            if k > 0 {
                pos += k
                emit(pos, &last, &out)
                continue
            }
            let space = c == 0x20
            let f2 = space ? at(pos + 1) : cls[pos]
            if f2 & L != 0 || f2 & N != 0 {
                let m = f2 & L != 0 ? L : N
                var p = pos + (space ? 1 : 0)
                while at(p) & m != 0 { p += 1 }
                pos = p
                emit(pos, &last, &out)
                continue
            }
            if f2 != 0 && f2 & (S | L | N) == 0 {
                var p = pos + (space ? 1 : 0)
                while true {
                    let f = at(p)
                    if f == 0 || f & (S | L | N) != 0 { break }
                    p += 1
                }
                pos = p
                emit(pos, &last, &out)
                continue
            }
            var w = 0
            while at(pos + w) & S != 0 { w += 1 }
            if w > 1 && pos + w < hi {
                pos += w - 1  // \s+(?!\S): leave the last space to prefix the next word
            } else if w > 0 {
                pos += w
            } else {
                pos += 1
            }
            emit(pos, &last, &out)
        }
        emit(hi, &last, &out)
    }

    /// Llama 3 / Qwen2:
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,maxDigits}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    private static func llama3(_ cp: UnsafeBufferPointer<UInt32>, _ cls: UnsafeBufferPointer<UInt8>,
                               _ lo: Int, _ hi: Int, maxDigits: Int, _ out: inout [Int]) {
        let L = CharClass.letter, N = CharClass.number, S = CharClass.whitespace
        @inline(__always) func at(_ i: Int) -> UInt8 { i < hi ? cls[i] : 0 }
        @inline(__always) func isCRLF(_ i: Int) -> Bool { i < hi && (cp[i] == 0x0D || cp[i] == 0x0A) }
        var last = lo
        var pos = lo
        while pos < hi {
            let c = cp[pos]
            let f = cls[pos]
            let k = contraction(cp, pos, hi, caseInsensitive: true)
            if k > 0 {
                pos += k
                emit(pos, &last, &out)
                continue
            }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !(c == 0x0D || c == 0x0A || f & N != 0) && (f & L != 0 || at(pos + 1) & L != 0) {
                var p = pos + 1
                while at(p) & L != 0 { p += 1 }
                pos = p
                emit(pos, &last, &out)
                continue
            }
            // \p{N}{1,maxDigits}
            if f & N != 0 {
                var p = pos
                while at(p) & N != 0 {
                    p += 1
                    if p - pos == maxDigits { break }
                }
                pos = p
                emit(pos, &last, &out)
                continue
            }
            // ' ?[^\s\p{L}\p{N}]+[\r\n]*'  (a lone trailing space also ends up here, as in llama.cpp)
            let f2 = c == 0x20 ? at(pos + 1) : f
            if f2 & (S | L | N) == 0 {
                var p = pos + (c == 0x20 ? 1 : 0)
                while true {
                    let g = at(p)
                    if g == 0 || g & (S | L | N) != 0 { break }
                    p += 1
                }
                while isCRLF(p) { p += 1 }
                pos = p
                emit(pos, &last, &out)
                continue
            }
            // \s*[\r\n]+ | \s+(?!\S) | \s+
            var w = 0
            var lastNewlineEnd = -1
            while at(pos + w) & S != 0 {
                if cp[pos + w] == 0x0D || cp[pos + w] == 0x0A { lastNewlineEnd = pos + w + 1 }
                w += 1
            }
            if lastNewlineEnd >= 0 {
                pos = lastNewlineEnd
            } else if w > 1 && pos + w < hi {
                pos += w - 1
            } else if w > 0 {
                pos += w
            } else {
                pos += 1
            }
            emit(pos, &last, &out)
        }
        emit(hi, &last, &out)
    }
}
