import Foundation

/// BERT's WordPiece (tokenizer model "bert"), as Hugging Face's fast BERT tokenizer does it: clean the
/// text (drop NUL, U+FFFD and other/control characters; whitespace becomes a space), put spaces around
/// CJK ideographs, strip accents (NFD without nonspacing marks) and lowercase, split on whitespace and
/// punctuation, then split each word greedily into the longest pieces in the vocabulary (a word with a
/// part that matches nothing, or of more than 100 characters, is one unknown token).
///
/// GGUF files store the vocabulary with a "phantom space": a word's first piece as "▁piece" and the
/// pieces after it bare (BERT's "##piece"). Vocabularies kept in BERT's own form are read as they are.
struct WordPieceModel: Sendable {
    let textToID: [[UInt8]: Int]
    let unknown: Int?
    /// Word-initial pieces carry "▁"; otherwise continuation pieces carry "##".
    let phantomSpace: Bool
    let lowercase: Bool
    static let maxWordCharacters = 100

    init(tokens: [String], textToID: [[UInt8]: Int], unknown: Int?, lowercase: Bool = true) {
        self.textToID = textToID
        self.unknown = unknown
        self.lowercase = lowercase
        phantomSpace = tokens.contains { $0.utf8.starts(with: "\u{2581}".utf8) } || !tokens.contains { $0.utf8.starts(with: "##".utf8) }
    }

    /// Appends the pieces of `text` (no special tokens in it) to `out`.
    func encode(_ text: String, into out: inout [Int]) {
        for word in Self.preTokenize(Self.normalize(text, lowercase: lowercase)) { encodeWord(word, into: &out) }
    }

    func encodeWord(_ word: [Unicode.Scalar], into out: inout [Int]) {
        guard word.count <= Self.maxWordCharacters else {
            if let unknown { out.append(unknown) }
            return
        }
        let first = out.count
        var start = 0
        var key: [UInt8] = []
        while start < word.count {
            var end = word.count
            var found: Int?
            while start < end {
                key.removeAll(keepingCapacity: true)
                if start == 0 && phantomSpace { key.append(contentsOf: [0xE2, 0x96, 0x81]) }
                if start > 0 && !phantomSpace { key.append(contentsOf: [0x23, 0x23]) }
                for s in word[start..<end] { key.append(contentsOf: String(s).utf8) }
                if let id = textToID[key] {
                    found = id
                    break
                }
                end -= 1
            }
            guard let id = found else {
                out.removeSubrange(first...)
                if let unknown { out.append(unknown) }
                return
            }
            out.append(id)
            start = end
        }
    }

    static func normalize(_ text: String, lowercase: Bool) -> String {
        var cleaned = String.UnicodeScalarView()
        for s in text.unicodeScalars {
            let v = s.value
            if v == 0 || v == 0xFFFD || isOther(s) { continue }
            if isWhitespace(s) {
                cleaned.append(" ")
            } else if isCJK(v) {
                cleaned.append(" ")
                cleaned.append(s)
                cleaned.append(" ")
            } else {
                cleaned.append(s)
            }
        }
        guard lowercase else { return String(cleaned) }
        // Accents first, then each character's own lowercase (no context: a final sigma stays σ).
        var lowered = String.UnicodeScalarView()
        for s in String(cleaned).decomposedStringWithCanonicalMapping.unicodeScalars
        where !(known(s) && s.properties.generalCategory == .nonspacingMark) {
            lowered.append(contentsOf: s.properties.lowercaseMapping.unicodeScalars)
        }
        return String(lowered)
    }

    /// Words: runs between whitespace, with every punctuation character a word of its own.
    static func preTokenize(_ text: String) -> [[Unicode.Scalar]] {
        var words: [[Unicode.Scalar]] = []
        var current: [Unicode.Scalar] = []
        for s in text.unicodeScalars {
            if s.properties.isWhitespace {
                if !current.isEmpty { words.append(current); current.removeAll() }
            } else if isPunctuation(s) {
                if !current.isEmpty { words.append(current); current.removeAll() }
                words.append([s])
            } else {
                current.append(s)
            }
        }
        if !current.isEmpty { words.append(current) }
        return words
    }

    /// Hugging Face's tokenizer decides categories (other, punctuation, nonspacing mark) from tables of
    /// Unicode 9.0 (its unicode_categories crate, 2016): characters assigned later are letters to it.
    static func known(_ s: Unicode.Scalar) -> Bool {
        guard let age = s.properties.age else { return false }
        return age.major < 9 || (age.major == 9 && age.minor == 0)
    }

    static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        s == "\t" || s == "\n" || s == "\r" || s.properties.isWhitespace
    }

    /// Control, format, private-use and surrogate characters, except the whitespace controls tab, newline
    /// and carriage return. Unassigned code points stay (they become the unknown token), as in Hugging
    /// Face's tokenizer, which also keeps this independent of the Unicode version's assignments.
    static func isOther(_ s: Unicode.Scalar) -> Bool {
        if s == "\t" || s == "\n" || s == "\r" { return false }
        guard known(s) else { return false }
        switch s.properties.generalCategory {
        case .control, .format, .privateUse, .surrogate: return true
        default: return false
        }
    }

    static func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v) { return true }
        guard known(s) else { return false }
        switch s.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation,
             .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }

    static func isCJK(_ v: UInt32) -> Bool {
        (0x4E00...0x9FFF).contains(v) || (0x3400...0x4DBF).contains(v) || (0x20000...0x2A6DF).contains(v)
            || (0x2A700...0x2B73F).contains(v) || (0x2B740...0x2B81F).contains(v) || (0x2B920...0x2CEAF).contains(v)
            || (0xF900...0xFAFF).contains(v) || (0x2F800...0x2FA1F).contains(v)
    }
}
