/// Incremental decoding: feed token ids one at a time and get back only complete UTF-8 text.
///
/// Bytes of a character split across tokens are held back until the character is complete, so a
/// stream never shows a broken character. Bytes that can never become valid UTF-8 are emitted as
/// U+FFFD exactly where `Tokenizer.decode` would put them, so the concatenation of everything
/// `append` and `flush` return equals `decode` of all the ids.
public struct StreamingDetokenizer: Sendable {
    public let tokenizer: Tokenizer
    public let renderSpecial: Bool
    private var pending: [UInt8] = []
    private var atStart = true

    public init(tokenizer: Tokenizer, renderSpecial: Bool = false) {
        self.tokenizer = tokenizer
        self.renderSpecial = renderSpecial
    }

    /// Bytes received but not yet returned (an incomplete character at the end).
    public var pendingByteCount: Int { pending.count }

    /// Adds one token; returns the text that became complete (possibly empty).
    public mutating func append(_ id: Int) -> String {
        var p = tokenizer.piece(id, renderSpecial: renderSpecial)
        if p.isEmpty { return "" }
        if atStart {
            atStart = false
            if tokenizer.stripsLeadingSpace && p[0] == 0x20 { p.removeFirst() }
        }
        pending.append(contentsOf: p)
        let cut = Self.completePrefixLength(pending)
        if cut == 0 { return "" }
        let s = String(decoding: pending[..<cut], as: UTF8.self)
        pending.removeFirst(cut)
        return s
    }

    /// Returns whatever is held back (an incomplete character becomes U+FFFD); call at the end of a stream.
    public mutating func flush() -> String {
        if pending.isEmpty { return "" }
        let s = String(decoding: pending, as: UTF8.self)
        pending.removeAll()
        return s
    }

    /// Length of the longest prefix that decodes the same on its own as within any continuation:
    /// everything except a trailing sequence that is a valid but incomplete UTF-8 prefix.
    /// Invalid bytes are consumed as maximal subparts, as the standard library's decoder does.
    static func completePrefixLength(_ b: [UInt8]) -> Int {
        let n = b.count
        var i = 0
        while i < n {
            let c = b[i]
            if c < 0x80 {
                i += 1
                continue
            }
            var need: Int
            var lo: UInt8 = 0x80, hi: UInt8 = 0xBF  // allowed range of the second byte
            switch c {
            case 0xC2...0xDF: need = 1
            case 0xE0: need = 2; lo = 0xA0
            case 0xE1...0xEC, 0xEE, 0xEF: need = 2
            case 0xED: need = 2; hi = 0x9F
            case 0xF0: need = 3; lo = 0x90
            case 0xF1...0xF3: need = 3
            case 0xF4: need = 3; hi = 0x8F
            default:
                i += 1  // never valid: one replacement character
                continue
            }
            var j = i + 1
            for k in 0..<need {
                if j >= n { return i }  // valid so far but incomplete: hold back from here
                let x = b[j]
                let (l, h) = k == 0 ? (lo, hi) : (UInt8(0x80), UInt8(0xBF))
                if x < l || x > h { break }
                j += 1
            }
            i = j  // a complete character, or an invalid maximal subpart ending before b[j]
        }
        return n
    }
}
