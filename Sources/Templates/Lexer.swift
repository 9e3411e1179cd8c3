import Foundation

enum TokenKind: Equatable {
    case text(String)
    case variableBegin, variableEnd, blockBegin, blockEnd
    case name(String)
    case string(String)
    case int(Int)
    case float(Double)
    case op(String)
    case eof
}

struct Token {
    var kind: TokenKind
    var line: Int
}

/// Splits template source into text and tag tokens, applying whitespace control
/// (`-`/`+` markers) and jinja2's `trim_blocks` / `lstrip_blocks` the way jinja2's lexer does.
struct Lexer {
    private let bytes: [UInt8]
    private var pos = 0
    private var line = 1
    private var tokens: [Token] = []
    private let trimBlocks: Bool
    private let lstripBlocks: Bool

    init(_ source: String, trimBlocks: Bool = true, lstripBlocks: Bool = true) {
        // Like jinja2, normalise newlines; a single trailing newline is kept (keep_trailing_newline
        // is False in jinja2, so drop it).
        var text = source.replacingOccurrences(of: "\r\n", with: "\n")
        if text.hasSuffix("\n") { text.removeLast() }
        bytes = Array(text.utf8)
        self.trimBlocks = trimBlocks
        self.lstripBlocks = lstripBlocks
    }

    static func tokenize(_ source: String) throws -> [Token] {
        var lexer = Lexer(source)
        try lexer.run()
        return lexer.tokens
    }

    private static let asciiSpace: Set<UInt8> = [0x20, 0x09, 0x0A, 0x0D, 0x0B, 0x0C]
    private func isSpace(_ c: UInt8) -> Bool { Self.asciiSpace.contains(c) }
    private func byte(_ i: Int) -> UInt8? { i < bytes.count ? bytes[i] : nil }

    private mutating func run() throws {
        var stripLeading = false
        while true {
            // Find the next tag opener.
            var j = pos
            while j + 1 < bytes.count {
                if bytes[j] == UInt8(ascii: "{"), [UInt8(ascii: "{"), UInt8(ascii: "%"), UInt8(ascii: "#")].contains(bytes[j + 1]) {
                    break
                }
                j += 1
            }
            if j + 1 >= bytes.count { j = bytes.count }

            var textStart = pos
            if stripLeading { while textStart < j, isSpace(bytes[textStart]) { textStart += 1 } }
            var textEnd = j
            let lineStarting = textStart == 0 || bytes[textStart - 1] == 0x0A
            let textLine = line + newlines(pos, textStart)

            if j < bytes.count {
                let kind = bytes[j + 1]
                let sign = byte(j + 2)
                if sign == UInt8(ascii: "-") {
                    while textEnd > textStart, isSpace(bytes[textEnd - 1]) { textEnd -= 1 }
                } else if sign != UInt8(ascii: "+"), lstripBlocks, kind != UInt8(ascii: "{") {
                    var lPos = textEnd
                    while lPos > textStart, bytes[lPos - 1] != 0x0A { lPos -= 1 }
                    if (lPos > textStart || lineStarting), lPos < textEnd, (lPos..<textEnd).allSatisfy({ isSpace(bytes[$0]) }) {
                        textEnd = lPos
                    }
                }
            }
            if textEnd > textStart {
                tokens.append(Token(kind: .text(String(decoding: bytes[textStart..<textEnd], as: UTF8.self)), line: textLine))
            }
            line += newlines(pos, j)
            pos = j
            guard pos < bytes.count else { break }

            let kind = bytes[pos + 1]
            pos += 2
            if let s = byte(pos), s == UInt8(ascii: "-") || s == UInt8(ascii: "+") { pos += 1 }
            switch kind {
            case UInt8(ascii: "#"):
                stripLeading = try skipComment()
            case UInt8(ascii: "%"):
                if try lexRawBlock() {
                    stripLeading = false
                } else {
                    tokens.append(Token(kind: .blockBegin, line: line))
                    stripLeading = try lexTagBody(end: UInt8(ascii: "%"))
                }
            default:
                tokens.append(Token(kind: .variableBegin, line: line))
                stripLeading = try lexTagBody(end: UInt8(ascii: "}"))
            }
        }
        tokens.append(Token(kind: .eof, line: line))
    }

    private func newlines(_ from: Int, _ to: Int) -> Int {
        var n = 0
        var i = from
        while i < to { if bytes[i] == 0x0A { n += 1 }; i += 1 }
        return n
    }

    /// Consumes the closing `%}`/`}}`/`#}` at `pos` (with its optional sign already seen at `signAt`),
    /// applies trim_blocks, and says whether the following text must be left-stripped.
    private mutating func finishTag(sign: UInt8?, isBlock: Bool) -> Bool {
        pos += 2
        if sign == UInt8(ascii: "-") { return true }
        if isBlock, trimBlocks, sign != UInt8(ascii: "+"), byte(pos) == 0x0A {
            pos += 1
            line += 1
        }
        return false
    }

    private mutating func skipComment() throws -> Bool {
        let startLine = line
        while pos + 1 < bytes.count {
            if bytes[pos] == UInt8(ascii: "#"), bytes[pos + 1] == UInt8(ascii: "}") {
                let sign = pos > 0 ? bytes[pos - 1] : nil
                return finishTag(sign: sign, isBlock: true)
            }
            if bytes[pos] == 0x0A { line += 1 }
            pos += 1
        }
        throw TemplateError.syntax("unterminated comment", line: startLine)
    }

    /// Handles `{% raw %}...{% endraw %}`, emitting its content verbatim.
    private mutating func lexRawBlock() throws -> Bool {
        var i = pos
        while i < bytes.count, isSpace(bytes[i]) { i += 1 }
        guard i + 3 <= bytes.count, Array(bytes[i..<i + 3]) == Array("raw".utf8) else { return false }
        i += 3
        while i < bytes.count, isSpace(bytes[i]) { i += 1 }
        var sign: UInt8? = nil
        if let c = byte(i), c == UInt8(ascii: "-") || c == UInt8(ascii: "+") { sign = c; i += 1 }
        guard byte(i) == UInt8(ascii: "%"), byte(i + 1) == UInt8(ascii: "}") else { return false }
        line += newlines(pos, i)
        pos = i
        let stripContentStart = finishTag(sign: sign, isBlock: true)
        // Find `{%[-+]? endraw [-+]?%}`.
        var k = pos
        while k + 1 < bytes.count {
            if bytes[k] == UInt8(ascii: "{"), bytes[k + 1] == UInt8(ascii: "%") {
                var m = k + 2
                var openSign: UInt8? = nil
                if let c = byte(m), c == UInt8(ascii: "-") || c == UInt8(ascii: "+") { openSign = c; m += 1 }
                while m < bytes.count, isSpace(bytes[m]) { m += 1 }
                if m + 6 <= bytes.count, Array(bytes[m..<m + 6]) == Array("endraw".utf8) {
                    m += 6
                    while m < bytes.count, isSpace(bytes[m]) { m += 1 }
                    var closeSign: UInt8? = nil
                    if let c = byte(m), c == UInt8(ascii: "-") || c == UInt8(ascii: "+") { closeSign = c; m += 1 }
                    if byte(m) == UInt8(ascii: "%"), byte(m + 1) == UInt8(ascii: "}") {
                        var s = pos, e = k
                        if stripContentStart { while s < e, isSpace(bytes[s]) { s += 1 } }
                        if openSign == UInt8(ascii: "-") { while e > s, isSpace(bytes[e - 1]) { e -= 1 } }
                        if e > s { tokens.append(Token(kind: .text(String(decoding: bytes[s..<e], as: UTF8.self)), line: line)) }
                        line += newlines(pos, m)
                        pos = m
                        _ = finishTag(sign: closeSign, isBlock: true)
                        if closeSign == UInt8(ascii: "-") {
                            while pos < bytes.count, isSpace(bytes[pos]) { if bytes[pos] == 0x0A { line += 1 }; pos += 1 }
                        }
                        return true
                    }
                }
            }
            k += 1
        }
        throw TemplateError.syntax("missing endraw", line: line)
    }

    /// Lexes expression tokens until the tag's closing delimiter (`%}` or `}}`) at bracket depth 0.
    private mutating func lexTagBody(end: UInt8) throws -> Bool {
        var depth = 0
        let isBlock = end == UInt8(ascii: "%")
        while true {
            while pos < bytes.count, isSpace(bytes[pos]) { if bytes[pos] == 0x0A { line += 1 }; pos += 1 }
            guard pos < bytes.count else { throw TemplateError.syntax("unexpected end of template inside a tag", line: line) }
            let c = bytes[pos]
            if depth == 0 {
                // Closing delimiter, optionally preceded by a sign.
                var p = pos
                var sign: UInt8? = nil
                if c == UInt8(ascii: "-") || c == UInt8(ascii: "+") { sign = c; p += 1 }
                if byte(p) == end, byte(p + 1) == UInt8(ascii: "}") {
                    pos = p
                    tokens.append(Token(kind: isBlock ? .blockEnd : .variableEnd, line: line))
                    return finishTag(sign: sign, isBlock: isBlock)
                }
            }
            if c == UInt8(ascii: "_") || (c | 0x20 >= UInt8(ascii: "a") && c | 0x20 <= UInt8(ascii: "z")) {
                let start = pos
                while let d = byte(pos), d == UInt8(ascii: "_") || (d | 0x20 >= UInt8(ascii: "a") && d | 0x20 <= UInt8(ascii: "z")) || isDigit(d) {
                    pos += 1
                }
                tokens.append(Token(kind: .name(String(decoding: bytes[start..<pos], as: UTF8.self)), line: line))
            } else if isDigit(c) {
                try lexNumber()
            } else if c == UInt8(ascii: "'") || c == UInt8(ascii: "\"") {
                try lexString(quote: c)
            } else {
                let two = pos + 1 < bytes.count ? String(decoding: bytes[pos..<pos + 2], as: UTF8.self) : ""
                if ["//", "**", "==", "!=", "<=", ">="].contains(two) {
                    tokens.append(Token(kind: .op(two), line: line))
                    pos += 2
                    continue
                }
                let one = String(UnicodeScalar(c))
                guard "+-*/%~<>=()[]{},.:|;".contains(one) else {
                    throw TemplateError.syntax("unexpected character '\(one)'", line: line)
                }
                if "([{".contains(one) { depth += 1 }
                if ")]}".contains(one) { depth = max(0, depth - 1) }
                tokens.append(Token(kind: .op(one), line: line))
                pos += 1
            }
        }
    }

    private func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }

    private mutating func lexNumber() throws {
        let start = pos
        var isFloat = false
        func digits() { while let d = byte(pos), isDigit(d) || d == UInt8(ascii: "_") { pos += 1 } }
        digits()
        if byte(pos) == UInt8(ascii: "."), let d = byte(pos + 1), isDigit(d) {
            isFloat = true
            pos += 1
            digits()
        }
        if let e = byte(pos), e == UInt8(ascii: "e") || e == UInt8(ascii: "E") {
            var p = pos + 1
            if let s = byte(p), s == UInt8(ascii: "+") || s == UInt8(ascii: "-") { p += 1 }
            if let d = byte(p), isDigit(d) {
                isFloat = true
                pos = p
                digits()
            }
        }
        let text = String(decoding: bytes[start..<pos], as: UTF8.self).replacingOccurrences(of: "_", with: "")
        if isFloat {
            tokens.append(Token(kind: .float(Double(text) ?? 0), line: line))
        } else {
            guard let value = Int(text) else { throw TemplateError.syntax("integer literal too large: \(text)", line: line) }
            tokens.append(Token(kind: .int(value), line: line))
        }
    }

    /// Decodes a string literal with Python escape rules.
    private mutating func lexString(quote: UInt8) throws {
        let startLine = line
        pos += 1
        var scalars = String.UnicodeScalarView()
        var runStart = pos
        func flush(_ end: Int) {
            scalars.append(contentsOf: String(decoding: bytes[runStart..<end], as: UTF8.self).unicodeScalars)
        }
        while pos < bytes.count {
            let c = bytes[pos]
            if c == quote {
                flush(pos)
                pos += 1
                tokens.append(Token(kind: .string(String(scalars)), line: startLine))
                return
            }
            if c == 0x0A { line += 1 }
            guard c == UInt8(ascii: "\\"), pos + 1 < bytes.count else { pos += 1; continue }
            flush(pos)
            let e = bytes[pos + 1]
            pos += 2
            switch e {
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "\\"): scalars.append("\\")
            case UInt8(ascii: "'"): scalars.append("'")
            case UInt8(ascii: "\""): scalars.append("\"")
            case UInt8(ascii: "a"): scalars.append("\u{07}")
            case UInt8(ascii: "b"): scalars.append("\u{08}")
            case UInt8(ascii: "f"): scalars.append("\u{0C}")
            case UInt8(ascii: "v"): scalars.append("\u{0B}")
            case 0x0A: line += 1  // line continuation
            case UInt8(ascii: "x"), UInt8(ascii: "u"), UInt8(ascii: "U"):
                let width = e == UInt8(ascii: "x") ? 2 : e == UInt8(ascii: "u") ? 4 : 8
                guard pos + width <= bytes.count,
                    let v = UInt32(String(decoding: bytes[pos..<pos + width], as: UTF8.self), radix: 16),
                    let scalar = Unicode.Scalar(v)
                else { throw TemplateError.syntax("invalid escape in string literal", line: line) }
                scalars.append(scalar)
                pos += width
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                var v = UInt32(e - 0x30)
                var n = 1
                while n < 3, let d = byte(pos), d >= 0x30, d <= 0x37 { v = v * 8 + UInt32(d - 0x30); pos += 1; n += 1 }
                scalars.append(Unicode.Scalar(v) ?? "\u{FFFD}")
            default:
                // Unknown escapes are kept verbatim, as in Python.
                scalars.append("\\")
                runStart = pos - 1
                continue
            }
            runStart = pos
        }
        throw TemplateError.syntax("unterminated string literal", line: startLine)
    }
}
