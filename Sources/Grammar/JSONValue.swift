/// A JSON value that keeps the order of object keys (a schema's `properties` order is the order the
/// output is generated in). Decodable from any `Decoder`, but a `Decoder` does not report key order;
/// `JSONValue.parse` does.
public enum JSONValue: Sendable, Equatable, Hashable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([(key: String, value: JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): true
        case (.bool(let x), .bool(let y)): x == y
        case (.int(let x), .int(let y)): x == y
        case (.double(let x), .double(let y)): x == y
        case (.int(let x), .double(let y)), (.double(let y), .int(let x)): Double(x) == y
        case (.string(let x), .string(let y)): x == y
        case (.array(let x), .array(let y)): x == y
        case (.object(let x), .object(let y)):
            x.count == y.count && x.allSatisfy { kv in y.contains { $0.key == kv.key && $0.value == kv.value } }
        default: false
        }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(serialized())
    }

    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.key == key }?.value
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var objectValue: [(key: String, value: JSONValue)]? {
        if case .object(let o) = self { return o }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// The value as a number, for ints and doubles.
    public var numberValue: Double? {
        switch self {
        case .int(let i): Double(i)
        case .double(let d): d
        default: nil
        }
    }

    /// The JSON type name as JSON Schema says it ("integer" for whole numbers).
    var schemaType: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .int: "integer"
        case .double(let d): d.rounded() == d && abs(d) < 1e18 ? "integer" : "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    // MARK: Writing

    /// Compact JSON (no spaces), keys in their order, strings escaped minimally.
    public func serialized() -> String {
        var out = ""
        write(into: &out, spaced: false)
        return out
    }

    /// JSON with a space after `:` and `,`, as Python's `json.dumps` writes it.
    public func spacedJSON() -> String {
        var out = ""
        write(into: &out, spaced: true)
        return out
    }

    func write(into out: inout String, spaced: Bool) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d):
            if d.isFinite, d.rounded() == d, abs(d) < 1e15 { out += String(Int(d)) + ".0" } else if d.isFinite {
                out += "\(d)"
            } else {
                out += "null"
            }
        case .string(let s): out += Self.quoted(s)
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += spaced ? ", " : "," }
                v.write(into: &out, spaced: spaced)
            }
            out += "]"
        case .object(let o):
            out += "{"
            for (i, kv) in o.enumerated() {
                if i > 0 { out += spaced ? ", " : "," }
                out += Self.quoted(kv.key)
                out += spaced ? ": " : ":"
                kv.value.write(into: &out, spaced: spaced)
            }
            out += "}"
        }
    }

    /// A JSON string literal for `s`: `"` and `\` escaped, control characters as `\n`, `\t`… or `\u00XX`.
    public static func quoted(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            default:
                if scalar.value < 0x20 {
                    out += escape(UInt8(scalar.value))
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    /// The JSON escape of a control byte.
    static func escape(_ c: UInt8) -> String {
        switch c {
        case 0x0A: return "\\n"
        case 0x09: return "\\t"
        case 0x0D: return "\\r"
        case 0x08: return "\\b"
        case 0x0C: return "\\f"
        default:
            let hex = String(c, radix: 16)
            return "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        }
    }

    // MARK: Parsing

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public var offset: Int
        public var message: String
        /// The document nests deeper than the parser's `maxDepth`.
        public var tooDeep = false
        /// The key of the top-level object's member where parsing stopped (for naming a parameter).
        public var topLevelKey: String?
        public var description: String { "invalid JSON at byte \(offset): \(message)" }
    }

    /// Parses a JSON document, keeping key order. Nesting deeper than `maxDepth` is an error.
    public static func parse(_ text: String, maxDepth: Int = 256) throws(ParseError) -> JSONValue {
        try parse(Array(text.utf8), maxDepth: maxDepth)
    }

    public static func parse(_ bytes: [UInt8], maxDepth: Int = 256) throws(ParseError) -> JSONValue {
        var p = Parser(bytes: bytes, maxDepth: maxDepth)
        let v = try p.value(depth: 0)
        p.skipSpace()
        guard p.pos == bytes.count else { throw p.fail("trailing characters") }
        return v
    }

    struct Parser {
        let bytes: [UInt8]
        let maxDepth: Int
        var pos = 0
        var topLevelKey: String?

        func fail(_ message: String) -> ParseError { ParseError(offset: pos, message: message, topLevelKey: topLevelKey) }

        mutating func skipSpace() {
            while pos < bytes.count, bytes[pos] == 0x20 || bytes[pos] == 0x0A || bytes[pos] == 0x0D || bytes[pos] == 0x09 {
                pos += 1
            }
        }

        mutating func take(_ c: UInt8) -> Bool {
            skipSpace()
            if pos < bytes.count, bytes[pos] == c {
                pos += 1
                return true
            }
            return false
        }

        mutating func value(depth: Int) throws(ParseError) -> JSONValue {
            guard depth < maxDepth else {
                var e = fail("nested deeper than \(maxDepth) levels")
                e.tooDeep = true
                throw e
            }
            skipSpace()
            guard pos < bytes.count else { throw fail("unexpected end") }
            switch bytes[pos] {
            case UInt8(ascii: "{"):
                pos += 1
                var members: [(key: String, value: JSONValue)] = []
                // A repeated key keeps its first place and its last value; the index keeps that linear.
                var index: [String: Int] = [:]
                if take(UInt8(ascii: "}")) { return .object(members) }
                repeat {
                    skipSpace()
                    let key = try string()
                    if depth == 0 { topLevelKey = key }
                    guard take(UInt8(ascii: ":")) else { throw fail("expected ':'") }
                    let v = try value(depth: depth + 1)
                    if let i = index[key] {
                        members[i].value = v
                    } else {
                        index[key] = members.count
                        members.append((key, v))
                    }
                } while take(UInt8(ascii: ","))
                guard take(UInt8(ascii: "}")) else { throw fail("expected ',' or '}'") }
                return .object(members)
            case UInt8(ascii: "["):
                pos += 1
                var items: [JSONValue] = []
                if take(UInt8(ascii: "]")) { return .array(items) }
                repeat { items.append(try value(depth: depth + 1)) } while take(UInt8(ascii: ","))
                guard take(UInt8(ascii: "]")) else { throw fail("expected ',' or ']'") }
                return .array(items)
            case UInt8(ascii: "\""):
                return .string(try string())
            case UInt8(ascii: "t"): try word("true"); return .bool(true)
            case UInt8(ascii: "f"): try word("false"); return .bool(false)
            case UInt8(ascii: "n"): try word("null"); return .null
            default: return try number()
            }
        }

        mutating func word(_ w: String) throws(ParseError) {
            for c in w.utf8 {
                guard pos < bytes.count, bytes[pos] == c else { throw fail("invalid literal") }
                pos += 1
            }
        }

        mutating func number() throws(ParseError) -> JSONValue {
            let start = pos
            func digits() -> Int {
                let s = pos
                while pos < bytes.count, bytes[pos] >= 0x30, bytes[pos] <= 0x39 { pos += 1 }
                return pos - s
            }
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "-") { pos += 1 }
            let intStart = pos
            guard digits() > 0 else { throw fail("invalid value") }
            if bytes[intStart] == 0x30, pos - intStart > 1 { throw fail("leading zero in a number") }
            var isInteger = true
            if pos < bytes.count, bytes[pos] == UInt8(ascii: ".") {
                pos += 1
                isInteger = false
                guard digits() > 0 else { throw fail("expected digits after '.'") }
            }
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E") {
                pos += 1
                isInteger = false
                if pos < bytes.count, bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-") { pos += 1 }
                guard digits() > 0 else { throw fail("expected exponent digits") }
            }
            let text = String(decoding: bytes[start..<pos], as: UTF8.self)
            if isInteger, let i = Int(text) { return .int(i) }
            guard let d = Double(text), d.isFinite else { throw fail("number out of range") }
            return .double(d)
        }

        mutating func string() throws(ParseError) -> String {
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else { throw fail("expected a string") }
            pos += 1
            var out: [UInt8] = []
            while pos < bytes.count {
                let c = bytes[pos]
                pos += 1
                if c == UInt8(ascii: "\"") {
                    guard let s = String(validating: out, as: UTF8.self) else { throw fail("invalid UTF-8 in a string") }
                    return s
                }
                if c < 0x20 { throw fail("control character in a string") }
                guard c == UInt8(ascii: "\\") else {
                    out.append(c)
                    continue
                }
                guard pos < bytes.count else { break }
                let e = bytes[pos]
                pos += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "u"):
                    var code = try hex4()
                    if (0xD800..<0xDC00).contains(code), pos + 1 < bytes.count, bytes[pos] == UInt8(ascii: "\\"),
                       bytes[pos + 1] == UInt8(ascii: "u") {
                        pos += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw fail("invalid surrogate pair") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let scalar = Unicode.Scalar(code) else { throw fail("lone surrogate") }
                    out.append(contentsOf: Array(String(Character(scalar)).utf8))
                default: throw fail("invalid escape")
                }
            }
            throw fail("unterminated string")
        }

        mutating func hex4() throws(ParseError) -> UInt32 {
            guard pos + 4 <= bytes.count,
                  let v = UInt32(String(decoding: bytes[pos..<pos + 4], as: UTF8.self), radix: 16)
            else { throw fail("invalid \\u escape") }
            pos += 4
            return v
        }
    }
}

extension CodingUserInfoKey {
    /// The document a decoder reads, as `JSONValue.parse` gave it: `JSONValue`s are taken from it
    /// whole (in linear time, keys in order) instead of being decoded value by value.
    public static let jsonValueDocument = CodingUserInfoKey(rawValue: "swiftlet.jsonValueDocument")!
}

extension JSONValue: Codable {
    /// Deepest nesting (coding path length) that decoding without a parsed document accepts: it tries
    /// each type in turn, so its cost grows with depth.
    public static let maxDecodingDepth = 128

    /// The value at a decoder's coding path: an index in arrays, a key in objects.
    public func value(at path: [any CodingKey]) -> JSONValue? {
        var v = self
        for key in path {
            switch v {
            case .array(let items):
                guard let i = key.intValue, items.indices.contains(i) else { return nil }
                v = items[i]
            case .object(let members):
                guard let m = members.first(where: { $0.key == key.stringValue }) else { return nil }
                v = m.value
            default:
                return nil
            }
        }
        return v
    }

    public init(from decoder: Decoder) throws {
        if let document = decoder.userInfo[.jsonValueDocument] as? JSONValue {
            guard let v = document.value(at: decoder.codingPath) else {
                throw DecodingError.dataCorrupted(.init(
                    codingPath: decoder.codingPath, debugDescription: "not in the parsed document"))
            }
            self = v
            return
        }
        guard decoder.codingPath.count <= Self.maxDecodingDepth else {
            throw DecodingError.dataCorrupted(.init(
                codingPath: decoder.codingPath, debugDescription: "nested deeper than \(Self.maxDecodingDepth) levels"))
        }
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? c.decode(Int.self) {
            self = .int(i)
        } else if let d = try? c.decode(Double.self) {
            self = .double(d)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([JSONValue].self) {
            self = .array(a)
        } else if let o = try? c.decode([String: JSONValue].self) {
            // A Decoder does not keep key order: sorted, so at least the result is deterministic.
            self = .object(o.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        } else {
            throw DecodingError.typeMismatch(JSONValue.self, .init(codingPath: c.codingPath, debugDescription: "expected a JSON value"))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(OrderedObject(members: o))
        }
    }

    private struct OrderedObject: Encodable {
        let members: [(key: String, value: JSONValue)]

        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: Key.self)
            for (k, v) in members { try c.encode(v, forKey: Key(stringValue: k)) }
        }
    }
}
