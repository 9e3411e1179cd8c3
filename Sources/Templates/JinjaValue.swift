import Foundation

/// A dictionary with string keys that remembers insertion order, as Python's dict does.
public struct JinjaObject: Sendable, Equatable, Sequence, ExpressibleByDictionaryLiteral {
    public private(set) var keys: [String] = []
    private var storage: [String: JinjaValue] = [:]

    public init() {}

    public init(_ pairs: [(String, JinjaValue)]) {
        for (key, value) in pairs { self[key] = value }
    }

    public init(dictionaryLiteral elements: (String, JinjaValue)...) {
        self.init(elements)
    }

    public var count: Int { keys.count }
    public var isEmpty: Bool { keys.isEmpty }
    public var values: [JinjaValue] { keys.map { storage[$0]! } }

    public subscript(key: String) -> JinjaValue? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    public func makeIterator() -> AnyIterator<(key: String, value: JinjaValue)> {
        var index = 0
        return AnyIterator {
            guard index < keys.count else { return nil }
            defer { index += 1 }
            return (keys[index], storage[keys[index]]!)
        }
    }

    /// Equality ignores order, like Python's dict.
    public static func == (lhs: JinjaObject, rhs: JinjaObject) -> Bool {
        lhs.storage == rhs.storage
    }
}

/// A callable value: a global function or a macro defined by the template.
public struct JinjaFunction: Sendable, Equatable {
    public let name: String
    let kind: Kind

    enum Kind: Sendable {
        case builtin
        case macro(Macro)
    }

    public static func == (lhs: JinjaFunction, rhs: JinjaFunction) -> Bool { lhs.name == rhs.name }
}

/// A value seen by a template. Tuples are represented as arrays.
public enum JinjaValue: Sendable, Equatable {
    /// jinja2's default `Undefined`: renders empty, is falsy, `is defined` is false.
    case undefined
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JinjaValue])
    case object(JinjaObject)
    case function(JinjaFunction)
}

extension JinjaValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JinjaValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JinjaValue)...) { self = .object(JinjaObject(elements)) }
    public init(nilLiteral: ()) { self = .none }
}

// MARK: - Python-like semantics

extension JinjaValue {
    var isTruthy: Bool {
        switch self {
        case .undefined, .none: false
        case .bool(let b): b
        case .int(let i): i != 0
        case .double(let d): d != 0
        case .string(let s): !s.isEmpty
        case .array(let a): !a.isEmpty
        case .object(let o): !o.isEmpty
        case .function: true
        }
    }

    var isUndefined: Bool { if case .undefined = self { true } else { false } }

    /// Python's `str()`; undefined renders as the empty string.
    public var stringValue: String {
        switch self {
        case .undefined: ""
        case .string(let s): s
        default: pythonRepr
        }
    }

    /// Python's `repr()`, used for containers rendered as text.
    var pythonRepr: String {
        switch self {
        case .undefined: ""
        case .none: "None"
        case .bool(let b): b ? "True" : "False"
        case .int(let i): String(i)
        case .double(let d): Self.formatDouble(d)
        case .string(let s): Self.reprString(s)
        case .array(let a): "[" + a.map(\.pythonRepr).joined(separator: ", ") + "]"
        case .object(let o):
            "{" + o.map { Self.reprString($0.key) + ": " + $0.value.pythonRepr }.joined(separator: ", ") + "}"
        case .function(let f): "<function \(f.name)>"
        }
    }

    static func formatDouble(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        return d.description
    }

    private static func reprString(_ s: String) -> String {
        let quote: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
        var out = String(quote)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if Character(scalar) == quote {
                    out += "\\" + String(quote)
                } else if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += "\\x" + String(format: "%02x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out.append(quote)
        return out
    }

    var typeName: String {
        switch self {
        case .undefined: "undefined"
        case .none: "none"
        case .bool: "boolean"
        case .int: "integer"
        case .double: "float"
        case .string: "string"
        case .array: "list"
        case .object: "dict"
        case .function: "function"
        }
    }

    /// Numeric view used by arithmetic and comparisons (Python treats bool as int).
    var number: Double? {
        switch self {
        case .int(let i): Double(i)
        case .double(let d): d
        case .bool(let b): b ? 1 : 0
        default: nil
        }
    }

    var intLike: Int? {
        switch self {
        case .int(let i): i
        case .bool(let b): b ? 1 : 0
        default: nil
        }
    }

    /// Python `==`: 1 == 1.0 == True; dicts compare without order.
    func looselyEquals(_ other: JinjaValue) -> Bool {
        switch (self, other) {
        case (.array(let a), .array(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.looselyEquals($1) }
        case (.object(let a), .object(let b)):
            return a.count == b.count && a.allSatisfy { b[$0.key].map($0.value.looselyEquals) ?? false }
        default:
            if let x = number, let y = other.number { return x == y }
            return self == other
        }
    }

    /// Iteration as Python does it: lists by element, dicts by key, strings by character.
    func iterated() throws -> [JinjaValue] {
        switch self {
        case .array(let a): return a
        case .object(let o): return o.keys.map { .string($0) }
        case .string(let s): return s.map { .string(String($0)) }
        case .undefined: return []
        default: throw TemplateError.runtime("'\(typeName)' object is not iterable", line: 0)
        }
    }
}

// MARK: - JSON bridging

extension JinjaValue {
    /// Converts Foundation JSON objects (as produced by JSONSerialization) or plain Swift values.
    /// Note that `[String: Any]` has no order; use `init(json:)` to keep key order.
    public init(jsonObject: Any?) {
        guard let value = jsonObject, !(value is NSNull) else {
            self = .none
            return
        }
        switch value {
        case let v as JinjaValue: self = v
        case let s as String: self = .string(s)
        case let a as [Any?]: self = .array(a.map { JinjaValue(jsonObject: $0) })
        case let d as [String: Any?]:
            self = .object(JinjaObject(d.map { ($0.key, JinjaValue(jsonObject: $0.value)) }))
        default:
            if type(of: value) == Bool.self, let b = value as? Bool {
                self = .bool(b)
            } else if type(of: value) == Int.self, let i = value as? Int {
                self = .int(i)
            } else if type(of: value) == Double.self, let d = value as? Double {
                self = .double(d)
            } else if let n = value as? NSNumber {
                switch String(cString: n.objCType) {
                case "c", "B": self = .bool(n.boolValue)
                case "f", "d": self = .double(n.doubleValue)
                default: self = .int(n.intValue)
                }
            } else {
                self = .string(String(describing: value))
            }
        }
    }

    /// Parses JSON text, keeping the order of object keys.
    public init(json: String) throws {
        var parser = JSONParser(bytes: Array(json.utf8))
        self = try parser.parseDocument()
    }

    /// Compact JSON text (keys in insertion order), suitable for round-tripping.
    public var jsonString: String {
        var out = ""
        JSONWriter(sortKeys: false, indent: nil, asciiOnly: false, htmlSafe: false).write(self, into: &out, level: 0)
        return out
    }
}

extension JinjaValue: Codable {
    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .none
        } else if let b = try? container.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? container.decode(Int.self) {
            self = .int(i)
        } else if let d = try? container.decode(Double.self) {
            self = .double(d)
        } else if let s = try? container.decode(String.self) {
            self = .string(s)
        } else if let a = try? container.decode([JinjaValue].self) {
            self = .array(a)
        } else {
            // Keyed containers do not expose the source order; keys are sorted for determinism.
            let d = try container.decode([String: JinjaValue].self)
            self = .object(JinjaObject(d.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .undefined, .none, .function: try container.encodeNil()
        case .bool(let b): try container.encode(b)
        case .int(let i): try container.encode(i)
        case .double(let d): try container.encode(d)
        case .string(let s): try container.encode(s)
        case .array(let a): try container.encode(a)
        case .object(let o): try container.encode(Dictionary(uniqueKeysWithValues: o.map { ($0.key, $0.value) }))
        }
    }
}
