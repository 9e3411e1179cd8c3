/// Per-scalar character classes used by the hand-written pre-tokenizer matchers.
///
/// The classes mirror the regex classes the pre-tokenizers are specified with:
/// `\p{L}` (letter), `\p{N}` (number), `\p{P}` (punctuation), `\s` (the Unicode
/// White_Space property, which is also what llama.cpp uses for `\s`).
/// Every in-range scalar has `valid` set, so a class of 0 means "outside the text".
struct CharClass {
    static let valid: UInt8 = 0x80
    static let letter: UInt8 = 0x01
    static let number: UInt8 = 0x02
    static let whitespace: UInt8 = 0x04
    static let punctuation: UInt8 = 0x08
    static let mark: UInt8 = 0x10

    /// Lazily built table for the Basic Multilingual Plane (64 KiB); other planes are looked up directly.
    /// Swift initialises globals lazily and thread-safely.
    private static let bmp: [UInt8] = {
        var t = [UInt8](repeating: 0, count: 0x10000)
        for v in 0..<0x10000 {
            if let s = Unicode.Scalar(UInt32(v)) {
                t[v] = compute(s)
            } else {
                // Surrogate code points never occur in Swift strings; classify like llama.cpp (\p{C}).
                t[v] = valid
            }
        }
        return t
    }()

    @inline(__always)
    static func of(_ v: UInt32) -> UInt8 {
        if v < 0x10000 { return bmp[Int(v)] }
        guard let s = Unicode.Scalar(v) else { return valid }
        return compute(s)
    }

    static func compute(_ s: Unicode.Scalar) -> UInt8 {
        var c = valid
        let p = s.properties
        if p.isWhitespace { c |= whitespace }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            c |= letter
        case .decimalNumber, .letterNumber, .otherNumber:
            c |= number
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation:
            c |= punctuation
        case .nonspacingMark, .spacingMark, .enclosingMark:
            c |= mark
        default:
            break
        }
        return c
    }
}
