/// The subset of regular expressions a string `pattern` may use: literals, `.`, classes (`[a-z0-9_]`,
/// `[^...]`), the escapes `\d \w \s \D \W \S` and escaped punctuation, groups `(...)` and `(?:...)`,
/// alternation, the quantifiers `* + ? {m} {m,} {m,n}` (lazy forms too), `^` at the start and `$` at the
/// end. As in JSON Schema (and Python's `re.search`), a pattern without `^`/`$` may match anywhere.
indirect enum Pattern: Equatable {
    case chars(CharacterSet)
    case sequence([Pattern])
    case alternatives([Pattern])
    case repetition(Pattern, min: Int, max: Int?)

    /// Characters as the output may contain them: ASCII ones as a byte set, and non-ASCII ones either
    /// all, none, or a list.
    struct CharacterSet: Equatable {
        var ascii = ByteSet()
        var nonASCII: NonASCII = .none

        enum NonASCII: Equatable {
            case none
            case all
            case scalars([Unicode.Scalar])
        }

        static let anyCharacter: CharacterSet = {
            var s = CharacterSet(ascii: ByteSet(range: 0...127), nonASCII: .all)
            s.ascii.remove(0x0A)
            return s
        }()

        static let everything = CharacterSet(ascii: ByteSet(range: 0...127), nonASCII: .all)
        static let digit = CharacterSet(ascii: ByteSet(range: 0x30...0x39))
        static let word = CharacterSet(ascii: ByteSet(range: 0x30...0x39).union(ByteSet(range: 0x41...0x5A))
            .union(ByteSet(range: 0x61...0x7A)).union(ByteSet([0x5F])))
        static let space = CharacterSet(ascii: ByteSet([0x20, 0x09, 0x0A, 0x0D, 0x0C, 0x0B]))

        /// The complement, restricted to ASCII when it cannot be computed exactly over all characters.
        func negated(exactOverUnicode: Bool) -> CharacterSet {
            var out = CharacterSet(ascii: ByteSet(range: 0...127).subtracting(ascii))
            out.nonASCII = exactOverUnicode && nonASCII == .none ? .all : .none
            return out
        }

        mutating func formUnion(_ o: CharacterSet) {
            ascii = ascii.union(o.ascii)
            switch (nonASCII, o.nonASCII) {
            case (.all, _), (_, .all): nonASCII = .all
            case (.none, let x): nonASCII = x
            case (.scalars(let a), .scalars(let b)): nonASCII = .scalars(a + b)
            case (.scalars, .none): break
            }
        }
    }

    struct Unsupported: Error {
        var message: String
    }

    /// Parses `source`; anchors become explicit "any text" around the unanchored ends.
    static func parse(_ source: String) throws(Unsupported) -> Pattern {
        var p = PatternParser(scalars: Array(source.unicodeScalars))
        let top = try p.topLevel()
        return top
    }
}

private struct PatternParser {
    let scalars: [Unicode.Scalar]
    var i = 0
    var depth = 0

    init(scalars: [Unicode.Scalar]) { self.scalars = scalars }

    var atEnd: Bool { i >= scalars.count }
    var peek: Unicode.Scalar? { atEnd ? nil : scalars[i] }

    func fail(_ m: String) -> Pattern.Unsupported { .init(message: m) }

    /// Top level: alternatives, each with optional `^` and `$`. Branches with the same anchors share
    /// their "any text" ends (`.*(a|b).*`, not `.*a.*|.*b.*`): one pair per branch would make every
    /// configuration set of the automaton as large as the number of branches (`||||…` took seconds).
    mutating func topLevel() throws(Pattern.Unsupported) -> Pattern {
        var groups: [(start: Bool, end: Bool, branches: [Pattern])] = []
        repeat {
            var anchoredStart = false
            if peek == "^" {
                i += 1
                anchoredStart = true
            }
            let items = try sequence(topLevel: true)
            var anchoredEnd = false
            if peek == "$" {
                i += 1
                anchoredEnd = true
            }
            guard atEnd || peek == "|" else {
                throw fail(peek == "$" || peek == "^" ? "'^' and '$' only at the start and end of the pattern" : "unbalanced ')'")
            }
            let branch = Pattern.sequence(items)
            if let g = groups.firstIndex(where: { $0.start == anchoredStart && $0.end == anchoredEnd }) {
                groups[g].branches.append(branch)
            } else {
                groups.append((anchoredStart, anchoredEnd, [branch]))
            }
        } while take("|")
        let anyText = Pattern.repetition(.chars(.everything), min: 0, max: nil)
        let parts: [Pattern] = groups.map { g in
            var items = [g.branches.count == 1 ? g.branches[0] : .alternatives(g.branches)]
            if !g.start { items.insert(anyText, at: 0) }
            if !g.end { items.append(anyText) }
            return .sequence(items)
        }
        return parts.count == 1 ? parts[0] : .alternatives(parts)
    }

    mutating func take(_ c: Unicode.Scalar) -> Bool {
        if peek == c {
            i += 1
            return true
        }
        return false
    }

    mutating func alternatives() throws(Pattern.Unsupported) -> Pattern {
        var branches: [Pattern] = [.sequence(try sequence(topLevel: false))]
        while take("|") { branches.append(.sequence(try sequence(topLevel: false))) }
        return branches.count == 1 ? branches[0] : .alternatives(branches)
    }

    mutating func sequence(topLevel: Bool) throws(Pattern.Unsupported) -> [Pattern] {
        var items: [Pattern] = []
        while let c = peek, c != "|", c != ")" {
            if c == "$" {
                if topLevel && (i + 1 == scalars.count || scalars[i + 1] == "|") { break }
                throw fail("'$' only at the end of the pattern")
            }
            if c == "^" { throw fail("'^' only at the start of the pattern") }
            let atom = try self.atom()
            items.append(try quantified(atom))
        }
        if topLevel, peek == ")" { throw fail("unbalanced ')'") }
        return items
    }

    mutating func quantified(_ atom: Pattern) throws(Pattern.Unsupported) -> Pattern {
        var result = atom
        while let c = peek {
            var range: (Int, Int?)
            switch c {
            case "*": range = (0, nil); i += 1
            case "+": range = (1, nil); i += 1
            case "?": range = (0, 1); i += 1
            case "{":
                guard let r = try braces() else { return result }
                range = r
            default: return result
            }
            _ = take("?")  // lazy: the same strings match
            if peek == "+" { throw fail("possessive quantifiers are not supported") }
            result = .repetition(result, min: range.0, max: range.1)
        }
        return result
    }

    /// `{m}`, `{m,}`, `{m,n}`; nil (and nothing consumed) if the brace is a literal.
    mutating func braces() throws(Pattern.Unsupported) -> (Int, Int?)? {
        let start = i
        i += 1
        func number() -> Int? {
            var n = 0, seen = false
            while let c = peek, let d = Int(String(c)), c.isASCII {
                n = n * 10 + d
                if n > 100_000 { n = 100_000 }
                seen = true
                i += 1
            }
            return seen ? n : nil
        }
        guard let m = number() else {
            i = start
            return nil
        }
        var max: Int? = m
        if take(",") { max = number() }
        guard take("}") else {
            i = start
            return nil
        }
        if let max, max < m { throw fail("quantifier {\(m),\(max)} has max < min") }
        return (m, max)
    }

    mutating func atom() throws(Pattern.Unsupported) -> Pattern {
        let c = scalars[i]
        i += 1
        switch c {
        case ".": return .chars(.anyCharacter)
        case "[": return .chars(try characterClass())
        case "(":
            depth += 1
            guard depth <= 32 else { throw fail("groups nest deeper than 32 levels") }
            if take("?") {
                if take(":") {
                } else if take("P"), take("<") {
                    while let s = peek, s != ">" { i += 1 }
                    guard take(">") else { throw fail("unterminated group name") }
                } else {
                    throw fail("lookaround, named references and inline flags are not supported")
                }
            }
            let inner = try alternatives()
            guard take(")") else { throw fail("missing ')'") }
            depth -= 1
            return inner
        case "\\": return .chars(try escape(inClass: false))
        case "*", "+", "?": throw fail("nothing to repeat before '\(c)'")
        case "{":
            i -= 1
            if (try braces()) != nil { throw fail("nothing to repeat before '{'") }
            i += 1
            return .chars(single(c))
        default: return .chars(single(c))
        }
    }

    func single(_ c: Unicode.Scalar) -> Pattern.CharacterSet {
        if c.isASCII { return .init(ascii: ByteSet([UInt8(c.value)])) }
        return .init(nonASCII: .scalars([c]))
    }

    mutating func escape(inClass: Bool) throws(Pattern.Unsupported) -> Pattern.CharacterSet {
        guard let c = peek else { throw fail("pattern ends with '\\'") }
        i += 1
        switch c {
        case "d": return .digit
        case "w": return .word
        case "s": return .space
        case "D": return Pattern.CharacterSet.digit.negated(exactOverUnicode: false)
        case "W": return Pattern.CharacterSet.word.negated(exactOverUnicode: false)
        case "S": return Pattern.CharacterSet.space.negated(exactOverUnicode: false)
        case "n": return single("\n")
        case "t": return single("\t")
        case "r": return single("\r")
        case "f": return single("\u{0C}")
        case "v": return single("\u{0B}")
        case "u", "x":
            let n = c == "u" ? 4 : 2
            guard i + n <= scalars.count,
                  let v = UInt32(String(String.UnicodeScalarView(scalars[i..<i + n])), radix: 16),
                  let s = Unicode.Scalar(v)
            else { throw fail("invalid \\\(c) escape") }
            i += n
            return single(s)
        case "b" where inClass: return single("\u{08}")
        default:
            if c.isASCII, !c.properties.isAlphabetic, !("0"..."9").contains(c) { return single(c) }
            throw fail("the escape '\\\(c)' is not supported")
        }
    }

    mutating func characterClass() throws(Pattern.Unsupported) -> Pattern.CharacterSet {
        let negated = take("^")
        var set = Pattern.CharacterSet()
        var hasShorthand = false
        var first = true
        while true {
            guard let c = peek else { throw fail("missing ']'") }
            if c == "]" && !first {
                i += 1
                break
            }
            first = false
            i += 1
            var low: Unicode.Scalar
            if c == "\\" {
                let e = try escape(inClass: true)
                let isSingle = e.nonASCII == .none && e.ascii.members.count == 1
                    || (e.ascii.isEmpty && { if case .scalars(let s) = e.nonASCII { s.count == 1 } else { false } }())
                guard isSingle, !(scalars[i - 1] == "d" || scalars[i - 1] == "w" || scalars[i - 1] == "s") else {
                    hasShorthand = true
                    set.formUnion(e)
                    continue
                }
                if let b = e.ascii.members.first {
                    low = Unicode.Scalar(b)
                } else if case .scalars(let s) = e.nonASCII {
                    low = s[0]
                } else {
                    continue
                }
            } else if c == "[" && peek == ":" {
                throw fail("POSIX classes like [:alpha:] are not supported")
            } else {
                low = c
            }
            if peek == "-", i + 1 < scalars.count, scalars[i + 1] != "]" {
                i += 1
                var high = scalars[i]
                i += 1
                if high == "\\" {
                    let e = try escape(inClass: true)
                    guard let b = e.ascii.members.first, e.ascii.members.count == 1 else {
                        throw fail("a class range must end in a single character")
                    }
                    high = Unicode.Scalar(b)
                }
                guard low.value <= high.value else { throw fail("class range out of order") }
                guard high.isASCII else { throw fail("class ranges of non-ASCII characters are not supported") }
                set.ascii = set.ascii.union(ByteSet(range: UInt8(low.value)...UInt8(high.value)))
            } else {
                set.formUnion(single(low))
            }
        }
        return negated ? set.negated(exactOverUnicode: !hasShorthand) : set
    }
}
