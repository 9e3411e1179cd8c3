/// Writes JSON the way Python's `json.dumps` does (separators, float repr, escapes).
struct JSONWriter {
    var sortKeys: Bool
    var indent: Int?
    var asciiOnly: Bool
    /// jinja2's `htmlsafe_json_dumps`: `<`, `>`, `&`, `'` become `\u00XX` escapes.
    var htmlSafe: Bool
    /// Writing stops once the output is longer (the caller then rejects it).
    var limit = Int.max

    func write(_ value: JinjaValue, into out: inout String, level: Int) {
        if out.utf8.count > limit { return }
        switch value {
        case .undefined, .none, .function: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d):
            if d.isNaN { out += "NaN" } else if d.isInfinite { out += d < 0 ? "-Infinity" : "Infinity" } else {
                out += d.description
            }
        case .string(let s): writeString(s, into: &out)
        case .array(let a):
            if a.isEmpty { out += "[]"; return }
            out += "["
            for (i, element) in a.enumerated() {
                if i > 0 { out += indent == nil ? ", " : "," }
                newline(&out, level: level + 1)
                write(element, into: &out, level: level + 1)
            }
            newline(&out, level: level)
            out += "]"
        case .object(let o):
            if o.isEmpty { out += "{}"; return }
            out += "{"
            var keys = o.keys
            if sortKeys { keys.sort { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) } }
            for (i, key) in keys.enumerated() {
                if i > 0 { out += indent == nil ? ", " : "," }
                newline(&out, level: level + 1)
                writeString(key, into: &out)
                out += ": "
                write(o[key]!, into: &out, level: level + 1)
            }
            newline(&out, level: level)
            out += "}"
        }
    }

    private func newline(_ out: inout String, level: Int) {
        guard let indent else { return }
        out += "\n"
        out += String(repeating: " ", count: max(0, indent * level))
    }

    private func writeString(_ s: String, into out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case "<" where htmlSafe, ">" where htmlSafe, "&" where htmlSafe, "'" where htmlSafe:
                appendEscape(scalar.value, &out)
            default:
                if scalar.value < 0x20 || (asciiOnly && scalar.value > 0x7E) {
                    if scalar.value > 0xFFFF {
                        let v = scalar.value - 0x10000
                        appendEscape(0xD800 + (v >> 10), &out)
                        appendEscape(0xDC00 + (v & 0x3FF), &out)
                    } else {
                        appendEscape(scalar.value, &out)
                    }
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }

    private func appendEscape(_ v: UInt32, _ out: inout String) {
        let hex = String(v, radix: 16)
        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
    }
}

/// A small JSON parser that keeps the order of object keys.
struct JSONParser {
    let bytes: [UInt8]
    var pos = 0
    /// Nesting of arrays and objects (bounded: the parser, and later the value's users, recurse).
    static let maxDepth = 256
    private var depth = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func parseDocument() throws -> JinjaValue {
        let value = try parseValue()
        skipSpace()
        guard pos == bytes.count else { throw fail("trailing characters") }
        return value
    }

    private func fail(_ message: String) -> TemplateError {
        .runtime("invalid JSON at offset \(pos): \(message)", line: 0)
    }

    private mutating func skipSpace() {
        while pos < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[pos]) { pos += 1 }
    }

    private mutating func parseValue() throws -> JinjaValue {
        depth += 1
        defer { depth -= 1 }
        guard depth <= Self.maxDepth else { throw fail("nested over \(Self.maxDepth) levels") }
        skipSpace()
        guard pos < bytes.count else { throw fail("unexpected end") }
        switch bytes[pos] {
        case UInt8(ascii: "{"):
            pos += 1
            var object = JinjaObject()
            skipSpace()
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(object) }
            while true {
                skipSpace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else { throw fail("expected key") }
                let key = try parseString()
                skipSpace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                pos += 1
                object[key] = try parseValue()
                skipSpace()
                guard pos < bytes.count else { throw fail("unexpected end") }
                if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                if bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(object) }
                throw fail("expected ',' or '}'")
            }
        case UInt8(ascii: "["):
            pos += 1
            var array: [JinjaValue] = []
            skipSpace()
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(array) }
            while true {
                array.append(try parseValue())
                skipSpace()
                guard pos < bytes.count else { throw fail("unexpected end") }
                if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                if bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(array) }
                throw fail("expected ',' or ']'")
            }
        case UInt8(ascii: "\""):
            return .string(try parseString())
        case UInt8(ascii: "t"): try expectWord("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectWord("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectWord("null"); return .none
        default: return try parseNumber()
        }
    }

    private mutating func expectWord(_ word: String) throws {
        let w = Array(word.utf8)
        guard pos + w.count <= bytes.count, Array(bytes[pos..<pos + w.count]) == w else { throw fail("bad literal") }
        pos += w.count
    }

    private mutating func parseNumber() throws -> JinjaValue {
        let start = pos
        var isFloat = false
        while pos < bytes.count {
            let c = bytes[pos]
            if (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: "-") || c == UInt8(ascii: "+") {
                pos += 1
            } else if c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
                isFloat = true
                pos += 1
            } else {
                break
            }
        }
        let text = String(decoding: bytes[start..<pos], as: UTF8.self)
        if !isFloat, let i = Int(text) { return .int(i) }
        guard let d = Double(text) else { throw fail("bad number '\(text)'") }
        return .double(d)
    }

    private mutating func parseString() throws -> String {
        pos += 1  // opening quote
        var scalars = String.UnicodeScalarView()
        var runStart = pos
        func flush(_ end: Int) { scalars.append(contentsOf: String(decoding: bytes[runStart..<end], as: UTF8.self).unicodeScalars) }
        while pos < bytes.count {
            let c = bytes[pos]
            if c == UInt8(ascii: "\"") {
                flush(pos)
                pos += 1
                return String(scalars)
            }
            if c != UInt8(ascii: "\\") { pos += 1; continue }
            flush(pos)
            pos += 1
            guard pos < bytes.count else { break }
            let e = bytes[pos]
            pos += 1
            switch e {
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "b"): scalars.append("\u{08}")
            case UInt8(ascii: "f"): scalars.append("\u{0C}")
            case UInt8(ascii: "u"):
                var code = try parseHex4()
                if (0xD800..<0xDC00).contains(code), pos + 1 < bytes.count, bytes[pos] == UInt8(ascii: "\\"),
                    bytes[pos + 1] == UInt8(ascii: "u")
                {
                    pos += 2
                    let low = try parseHex4()
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                }
                scalars.append(Unicode.Scalar(code) ?? "\u{FFFD}")
            default: scalars.append(Unicode.Scalar(e))
            }
            runStart = pos
        }
        throw fail("unterminated string")
    }

    private mutating func parseHex4() throws -> UInt32 {
        guard pos + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[pos..<pos + 4], as: UTF8.self), radix: 16)
        else { throw fail("bad \\u escape") }
        pos += 4
        return v
    }
}
