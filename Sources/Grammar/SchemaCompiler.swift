/// A schema the compiler cannot turn into a grammar: the keyword, where it is, and why.
public struct SchemaError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The schema keyword at fault (e.g. "patternProperties", "$ref", "pattern").
    public var keyword: String
    /// JSON pointer of the schema that holds it, e.g. "#/properties/tags".
    public var path: String
    public var message: String

    public init(keyword: String, path: String, message: String) {
        self.keyword = keyword
        self.path = path
        self.message = message
    }

    public var description: String { "'\(keyword)' at \(path): \(message)" }
}

/// Bounds on the work a schema may cause: a request can never make the server build an unbounded automaton.
public struct GrammarLimits: Sendable {
    /// States of the compiled network.
    public var maxStates = 250_000
    /// Nesting of schemas inside schemas.
    public var maxSchemaDepth = 32
    /// Largest count (minItems, maxItems, minLength, maxLength, pattern repetition) unrolled into states.
    public var maxCount = 1000
    /// Depth of the automaton's call stack at run time: each value inside another takes one or two
    /// levels, so this bounds the nesting of free-form JSON (schemas within `maxSchemaDepth` always fit).
    public var maxNesting = 96
    /// Digits in the integer part and in the fraction of a generated number.
    public var maxDigits = 16
    /// Asked every few thousand states: once it says true, compilation stops with an error (e.g. the
    /// client that asked for the grammar has gone).
    public var shouldStop: (@Sendable () -> Bool)?

    public init() {}
}

/// Compiles a JSON Schema into rules of a `Network` (see README: "Structured outputs and tools").
struct SchemaCompiler {
    let b: NetworkBuilder
    let limits: GrammarLimits
    let root: JSONValue
    private var refRules: [String: Int32] = [:]
    private var refsInProgress: [String] = []
    private var genericValue: Int32?
    private var genericString: Int32?

    static let annotations: Set<String> = [
        "title", "description", "$schema", "$id", "$comment", "default", "examples", "deprecated", "readOnly",
        "writeOnly", "$defs", "definitions", "$anchor", "contentEncoding", "contentMediaType", "nullable", "strict",
    ]
    static let unsupported: [String: String] = [
        "not": "negation", "allOf": "intersections of several schemas", "oneOf": "exactly-one-of alternatives",
        "if": "conditional schemas", "then": "conditional schemas", "else": "conditional schemas",
        "patternProperties": "properties matched by pattern", "propertyNames": "constraints on property names",
        "dependentRequired": "dependencies", "dependentSchemas": "dependencies", "dependencies": "dependencies",
        "unevaluatedProperties": "unevaluated properties", "unevaluatedItems": "unevaluated items",
        "contains": "array containment", "minContains": "array containment", "maxContains": "array containment",
        "minProperties": "property counts", "maxProperties": "property counts", "multipleOf": "multiples",
        "$dynamicRef": "dynamic references", "$recursiveRef": "recursive references",
    ]
    static let formats: [String: String] = [
        "date": #"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"#,
        "time": #"^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"#,
        "date-time": #"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"#,
        "uuid": #"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"#,
        "email": #"^[a-zA-Z0-9._%+-]{1,64}@[a-zA-Z0-9-]{1,63}(\.[a-zA-Z0-9-]{1,63}){0,4}\.[a-zA-Z]{2,12}$"#,
        "ipv4": #"^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$"#,
    ]
    static let whitespace = ByteSet([0x20, 0x0A])

    init(builder: NetworkBuilder, limits: GrammarLimits, root: JSONValue) {
        b = builder
        self.limits = limits
        self.root = root
    }

    func error(_ keyword: String, _ path: String, _ message: String) -> SchemaError {
        SchemaError(keyword: keyword, path: path, message: message)
    }

    /// Wraps the builder's size limit as an error about the schema.
    func st(_ path: String) throws(SchemaError) -> Int32 {
        do { return try b.state() } catch { throw error.stopped ? stopped(path) : tooLarge(path) }
    }

    func stopped(_ path: String) -> SchemaError {
        error("schema", path, "compilation was stopped")
    }

    func tooLarge(_ path: String) -> SchemaError {
        error("schema", path, "the schema is too large to compile (more than \(limits.maxStates) automaton states)")
    }

    /// A new rule: its start and its end (final) state.
    func newRule(_ path: String) throws(SchemaError) -> (Int32, Int32) {
        let s = try st(path), e = try st(path)
        b.setFinal(e)
        return (s, e)
    }

    /// Optional single whitespace between JSON tokens.
    func ws(_ from: Int32, _ path: String) throws(SchemaError) -> Int32 {
        let t = try st(path)
        b.epsilon(from, t)
        b.edge(from, Self.whitespace, t)
        return t
    }

    func lit(_ from: Int32, _ text: String, _ path: String) throws(SchemaError) -> Int32 {
        do { return try b.literal(from, Array(text.utf8)) } catch { throw error.stopped ? stopped(path) : tooLarge(path) }
    }

    // MARK: Schemas

    /// The rule for `schema` (its start state).
    mutating func rule(_ schema: JSONValue, path: String, depth: Int) throws(SchemaError) -> Int32 {
        guard depth <= limits.maxSchemaDepth else {
            throw error("schema", path, "schemas nest deeper than \(limits.maxSchemaDepth) levels")
        }
        switch schema {
        case .bool(true): return try anyValue(path)
        case .bool(false): throw error("false", path, "the schema 'false' accepts no value")
        case .object(let members):
            if members.isEmpty { return try anyValue(path) }
            return try objectSchema(schema, members, path: path, depth: depth)
        default:
            throw error("schema", path, "a schema must be an object or a boolean")
        }
    }

    private mutating func objectSchema(
        _ schema: JSONValue, _ members: [(key: String, value: JSONValue)], path: String, depth: Int
    ) throws(SchemaError) -> Int32 {
        for (k, _) in members {
            if let what = Self.unsupported[k] {
                if k == "allOf", case .array(let a) = schema[k], a.count == 1 { continue }
                throw error(k, path, "'\(k)' (\(what)) is not supported")
            }
        }
        if case .bool(true) = schema["uniqueItems"] ?? .bool(false) {
            throw error("uniqueItems", path, "'uniqueItems' is not supported")
        }
        let validation = members.filter { !Self.annotations.contains($0.key) }.map(\.key)

        if let ref = schema["$ref"] {
            let others = validation.filter { $0 != "$ref" }
            guard others.isEmpty else {
                throw error("$ref", path, "'$ref' beside other keywords (\(others.joined(separator: ", "))) is not supported")
            }
            guard case .string(let pointer) = ref else { throw error("$ref", path, "'$ref' must be a string") }
            return try reference(pointer, path: path, depth: depth)
        }
        if case .array(let parts) = schema["allOf"] ?? .null, parts.count == 1 {
            let others = validation.filter { $0 != "allOf" }
            guard others.isEmpty else {
                throw error("allOf", path, "'allOf' beside other keywords (\(others.joined(separator: ", "))) is not supported")
            }
            return try rule(parts[0], path: path + "/allOf/0", depth: depth + 1)
        }
        if let anyOf = schema["anyOf"] {
            let others = validation.filter { $0 != "anyOf" }
            guard others.isEmpty else {
                throw error("anyOf", path, "'anyOf' beside other keywords (\(others.joined(separator: ", "))) is not supported")
            }
            guard case .array(let alternatives) = anyOf, !alternatives.isEmpty else {
                throw error("anyOf", path, "'anyOf' must be a non-empty array of schemas")
            }
            let (s, e) = try newRule(path)
            for (i, alt) in alternatives.enumerated() {
                b.call(s, rule: try rule(alt, path: "\(path)/anyOf/\(i)", depth: depth + 1), then: e)
            }
            return s
        }
        if schema["enum"] != nil || schema["const"] != nil {
            return try literals(schema, members, path: path, depth: depth)
        }

        var types: [String]
        switch schema["type"] {
        case nil: types = [Self.inferredType(schema)]
        case .string(let t)?: types = [t]
        case .array(let a)?:
            types = []
            for t in a {
                guard case .string(let s) = t else { throw error("type", path, "'type' must be a string or an array of strings") }
                types.append(s)
            }
            guard !types.isEmpty else { throw error("type", path, "'type' must not be empty") }
        default: throw error("type", path, "'type' must be a string or an array of strings")
        }
        if types.count == 1 { return try typed(types[0], schema, path: path, depth: depth) }
        let (s, e) = try newRule(path)
        for t in Set(types).sorted() {
            b.call(s, rule: try typed(t, schema, path: path, depth: depth), then: e)
        }
        return s
    }

    static func inferredType(_ schema: JSONValue) -> String {
        if schema["properties"] != nil || schema["additionalProperties"] != nil || schema["required"] != nil { return "object" }
        if schema["items"] != nil || schema["prefixItems"] != nil || schema["minItems"] != nil || schema["maxItems"] != nil {
            return "array"
        }
        if schema["pattern"] != nil || schema["minLength"] != nil || schema["maxLength"] != nil || schema["format"] != nil {
            return "string"
        }
        if schema["minimum"] != nil || schema["maximum"] != nil || schema["exclusiveMinimum"] != nil
            || schema["exclusiveMaximum"] != nil { return "number" }
        return "any"
    }

    private mutating func typed(_ type: String, _ schema: JSONValue, path: String, depth: Int) throws(SchemaError) -> Int32 {
        switch type {
        case "object": return try object(schema, path: path, depth: depth)
        case "array": return try array(schema, path: path, depth: depth)
        case "string": return try string(schema, path: path)
        case "integer": return try integer(schema, path: path)
        case "number": return try number(schema, path: path)
        case "boolean":
            let (s, e) = try newRule(path)
            b.epsilon(try lit(s, "true", path), e)
            b.epsilon(try lit(s, "false", path), e)
            return s
        case "null":
            let (s, e) = try newRule(path)
            b.epsilon(try lit(s, "null", path), e)
            return s
        case "any": return try anyValue(path)
        default: throw error("type", path, "unknown 'type' '\(type)'")
        }
    }

    private mutating func reference(_ pointer: String, path: String, depth: Int) throws(SchemaError) -> Int32 {
        if let r = refRules[pointer] { return r }
        guard !refsInProgress.contains(pointer) else {
            throw error("$ref", path, "recursive schemas are not supported ('$ref' '\(pointer)' refers to itself)")
        }
        var target = root
        guard pointer == "#" || pointer.hasPrefix("#/") else {
            throw error("$ref", path, "only '$ref' inside the schema ('#/$defs/...') is supported, not '\(pointer)'")
        }
        for raw in pointer.dropFirst(2).split(separator: "/", omittingEmptySubsequences: false) where pointer != "#" {
            let part = raw.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            switch target {
            case .object:
                guard let next = target[String(part)] else { throw error("$ref", path, "'$ref' '\(pointer)' does not exist") }
                target = next
            case .array(let a):
                guard let i = Int(part), a.indices.contains(i) else { throw error("$ref", path, "'$ref' '\(pointer)' does not exist") }
                target = a[i]
            default: throw error("$ref", path, "'$ref' '\(pointer)' does not exist")
            }
        }
        refsInProgress.append(pointer)
        let r = try rule(target, path: pointer, depth: depth + 1)
        refsInProgress.removeLast()
        refRules[pointer] = r
        return r
    }

    // MARK: enum and const

    private mutating func literals(
        _ schema: JSONValue, _ members: [(key: String, value: JSONValue)], path: String, depth: Int
    ) throws(SchemaError) -> Int32 {
        var values: [JSONValue]
        let keyword = schema["const"] != nil ? "const" : "enum"
        if let c = schema["const"] {
            values = [c]
            if case .array(let e) = schema["enum"] ?? .null { values = values.filter { e.contains($0) } }
        } else {
            guard case .array(let e) = schema["enum"]!, !e.isEmpty else {
                throw error("enum", path, "'enum' must be a non-empty array")
            }
            values = e
        }
        // The other keywords still apply: keep the values that the rest of the schema accepts.
        let rest = JSONValue.object(members.filter { $0.key != "enum" && $0.key != "const" })
        let hasRest = rest.objectValue!.contains { !Self.annotations.contains($0.key) }
        if hasRest {
            let restRule = try rule(rest, path: path, depth: depth + 1)
            values = values.filter { b.network.accepts(rule: restRule, Array($0.serialized().utf8), maxNesting: limits.maxNesting) }
        }
        guard !values.isEmpty else { throw error(keyword, path, "no value of '\(keyword)' satisfies the rest of the schema") }
        let (s, e) = try newRule(path)
        var seen = Set<String>()
        for v in values {
            let text = v.serialized()
            guard seen.insert(text).inserted else { continue }
            b.epsilon(try lit(s, text, path), e)
        }
        return s
    }

    // MARK: Objects

    private mutating func object(_ schema: JSONValue, path: String, depth: Int) throws(SchemaError) -> Int32 {
        var properties: [(key: String, value: JSONValue)] = []
        if let p = schema["properties"] {
            guard case .object(let ps) = p else { throw error("properties", path, "'properties' must be an object") }
            properties = ps
        }
        var required: [String] = []
        if let r = schema["required"] {
            guard case .array(let rs) = r else { throw error("required", path, "'required' must be an array of strings") }
            for x in rs {
                guard case .string(let s) = x else { throw error("required", path, "'required' must be an array of strings") }
                required.append(s)
            }
        }
        for name in required where !properties.contains(where: { $0.key == name }) {
            properties.append((name, .bool(true)))
        }
        // Extra keys: with a schema or `true` for additionalProperties; with none given, only if no properties are.
        var extra: JSONValue?
        switch schema["additionalProperties"] {
        case nil: extra = properties.isEmpty ? .bool(true) : nil
        case .bool(false)?: extra = nil
        case let x?: extra = x
        }

        let (s, e) = try newRule(path)
        let open = try ws(try lit(s, "{", path), path)
        // before[i][k]: before property i, with k = 0 if nothing was written yet, 1 otherwise.
        var none = open
        var some = try st(path)
        for (key, valueSchema) in properties {
            let valueRule = try rule(valueSchema, path: "\(path)/properties/\(key)", depth: depth + 1)
            let nextNone = try st(path), nextSome = try st(path)
            for (from, comma) in [(none, false), (some, true)] {
                var at = from
                if comma { at = try ws(try lit(try ws(at, path), ",", path), path) }
                at = try lit(at, JSONValue.quoted(key), path)
                at = try ws(try lit(try ws(at, path), ":", path), path)
                b.call(at, rule: valueRule, then: nextSome)
            }
            if !required.contains(key) {
                b.epsilon(none, nextNone)
                b.epsilon(some, nextSome)
            }
            none = nextNone
            some = nextSome
        }
        if let extra {
            let valueRule = try rule(extra, path: "\(path)/additionalProperties", depth: depth + 1)
            let keyRule = try keyExcluding(properties.map(\.key), path: path)
            for (from, comma) in [(none, false), (some, true)] {
                var at = from
                if comma { at = try ws(try lit(try ws(at, path), ",", path), path) }
                let afterKey = try st(path)
                b.call(at, rule: keyRule, then: afterKey)
                at = try ws(try lit(try ws(afterKey, path), ":", path), path)
                b.call(at, rule: valueRule, then: some)
            }
        }
        b.epsilon(try lit(try ws(some, path), "}", path), e)
        b.epsilon(try lit(none, "}", path), e)
        return s
    }

    /// A JSON string (with quotes) that is none of `keys`: no escapes, so no spelling of a key slips through.
    private mutating func keyExcluding(_ keys: [String], path: String) throws(SchemaError) -> Int32 {
        if keys.isEmpty { return try anyString(path) }
        let (s, e) = try newRule(path)
        let free = try st(path)
        b.edge(free, UInt8(ascii: "\""), e)
        try character(from: free, to: free, escapes: false, path: path)
        // A trie of the keys' bytes: leaving it at any byte goes to `free`; the quote closes only off a key.
        let encoded = keys.map { Array(JSONValue.quoted($0).utf8.dropFirst().dropLast()) }
        func build(_ node: Int32, _ prefix: [UInt8]) throws(SchemaError) {
            let continuing = encoded.filter { $0.count > prefix.count && Array($0.prefix(prefix.count)) == prefix }
            var next = ByteSet()
            for k in continuing { next.insert(k[prefix.count]) }
            if !encoded.contains(prefix) { b.edge(node, UInt8(ascii: "\""), e) }
            // Another ASCII character leaves the trie (non-ASCII ones only continue keys, so no key slips through).
            var plain = ByteSet(range: 0x20...0x7F)
            plain.remove(UInt8(ascii: "\""))
            plain.remove(UInt8(ascii: "\\"))
            b.edge(node, plain.subtracting(next), free)
            for byte in next.members {
                let child = try st(path)
                b.edge(node, byte, child)
                try build(child, prefix + [byte])
            }
        }
        let inside = try st(path)
        b.edge(s, UInt8(ascii: "\""), inside)
        try build(inside, [])
        return s
    }

    // MARK: Arrays

    private mutating func array(_ schema: JSONValue, path: String, depth: Int) throws(SchemaError) -> Int32 {
        var prefix: [JSONValue] = []
        if let p = schema["prefixItems"] {
            guard case .array(let ps) = p else { throw error("prefixItems", path, "'prefixItems' must be an array") }
            prefix = ps
        }
        var items: JSONValue? = .bool(true)
        switch schema["items"] {
        case nil: break
        case .bool(false)?: items = nil
        case .array?: throw error("items", path, "'items' as an array is not supported; use 'prefixItems'")
        case let x?: items = x
        }
        let minItems = try count(schema, "minItems", path) ?? 0
        var maxItems = try count(schema, "maxItems", path)
        if items == nil { maxItems = min(maxItems ?? prefix.count, prefix.count) }
        if let maxItems, maxItems < minItems {
            throw error("maxItems", path, "'maxItems' is less than 'minItems' (or than the items allowed)")
        }
        // States after k items, k up to the last count that matters; the last one loops when unbounded.
        let last = max(minItems, maxItems ?? max(minItems, prefix.count, 1))
        guard last <= limits.maxCount else {
            throw error(maxItems != nil ? "maxItems" : "minItems", path, "'\(maxItems != nil ? "maxItems" : "minItems")' above \(limits.maxCount) is not supported")
        }
        var prefixRules: [Int32] = []
        for (i, p) in prefix.enumerated() {
            prefixRules.append(try rule(p, path: "\(path)/prefixItems/\(i)", depth: depth + 1))
        }
        let itemRule = try items.map { (x: JSONValue) throws(SchemaError) -> Int32 in
            try rule(x, path: "\(path)/items", depth: depth + 1)
        }
        func element(_ k: Int) -> Int32? { k < prefixRules.count ? prefixRules[k] : itemRule }

        let (s, e) = try newRule(path)
        let open = try ws(try lit(s, "[", path), path)
        var after: [Int32] = [open]
        for _ in 0..<last { after.append(try st(path)) }
        for k in 0...last {
            let from = after[k]
            if k >= minItems {
                b.epsilon(try lit(k == 0 ? from : try ws(from, path), "]", path), e)
            }
            let target = k < last ? after[k + 1] : (maxItems == nil ? after[k] : nil)
            guard let target, let el = element(k) else { continue }
            let at = k == 0 ? from : try ws(try lit(try ws(from, path), ",", path), path)
            b.call(at, rule: el, then: target)
        }
        return s
    }

    func count(_ schema: JSONValue, _ keyword: String, _ path: String) throws(SchemaError) -> Int? {
        guard let v = schema[keyword] else { return nil }
        guard let d = v.numberValue, d >= 0, d.rounded() == d else {
            throw error(keyword, path, "'\(keyword)' must be a non-negative integer")
        }
        guard d <= Double(limits.maxCount) else {
            throw error(keyword, path, "values of '\(keyword)' above \(limits.maxCount) are not supported")
        }
        return Int(d)
    }

    // MARK: Strings

    private mutating func string(_ schema: JSONValue, path: String) throws(SchemaError) -> Int32 {
        let minLength = try count(schema, "minLength", path) ?? 0
        let maxLength = try count(schema, "maxLength", path)
        var pattern: String?
        var patternKeyword = "pattern"
        if let f = schema["format"] {
            guard case .string(let name) = f, let p = Self.formats[name] else {
                throw error("format", path, "'format' \(f.serialized()) is not supported (supported: \(Self.formats.keys.sorted().joined(separator: ", ")))")
            }
            pattern = p
            patternKeyword = "format"
        }
        if let p = schema["pattern"] {
            guard case .string(let source) = p else { throw error("pattern", path, "'pattern' must be a string") }
            guard pattern == nil else { throw error("pattern", path, "'pattern' together with 'format' is not supported") }
            pattern = source
        }
        if pattern == nil && minLength == 0 && maxLength == nil { return try anyString(path) }
        if let maxLength, maxLength < minLength { throw error("maxLength", path, "'maxLength' is less than 'minLength'") }

        let (s, e) = try newRule(path)
        let open = try lit(s, "\"", path)
        if let pattern {
            guard minLength == 0 && maxLength == nil else {
                throw error(schema["minLength"] != nil ? "minLength" : "maxLength", path,
                            "'minLength'/'maxLength' together with '\(patternKeyword)' are not supported")
            }
            let parsed: Pattern
            do { parsed = try Pattern.parse(pattern) } catch {
                throw self.error(patternKeyword, path, "the pattern \(JSONValue.quoted(pattern)) is not supported: \(error.message)")
            }
            let end = try st(path)
            try compile(parsed, from: open, to: end, path: path, keyword: patternKeyword)
            b.edge(end, UInt8(ascii: "\""), e)
            return s
        }
        var at = open
        for k in 0..<max(minLength, maxLength ?? minLength) {
            if k >= minLength { b.edge(at, UInt8(ascii: "\""), e) }
            let next = try st(path)
            try character(from: at, to: next, escapes: true, path: path)
            at = next
        }
        b.edge(at, UInt8(ascii: "\""), e)
        if maxLength == nil { try character(from: at, to: at, escapes: true, path: path) }
        return s
    }

    /// Any JSON string, quotes included (one shared rule).
    mutating func anyString(_ path: String) throws(SchemaError) -> Int32 {
        if let r = genericString { return r }
        let (s, e) = try newRule(path)
        let inside = try lit(s, "\"", path)
        b.edge(inside, UInt8(ascii: "\""), e)
        try character(from: inside, to: inside, escapes: true, path: path)
        genericString = s
        return s
    }

    /// One character of a JSON string's content, from `from` to `to`: printable ASCII but `"` and `\`, an
    /// escape (`\uXXXX` but surrogates), or a well-formed UTF-8 sequence.
    func character(from: Int32, to: Int32, escapes: Bool, path: String) throws(SchemaError) {
        var plain = ByteSet(range: 0x20...0x7F)
        plain.remove(UInt8(ascii: "\""))
        plain.remove(UInt8(ascii: "\\"))
        b.edge(from, plain, to)
        if escapes {
            let esc = try st(path)
            b.edge(from, UInt8(ascii: "\\"), esc)
            b.edge(esc, ByteSet(Array("\"\\/bfnrt".utf8)), to)
            let u = try st(path), h2 = try st(path), h2low = try st(path), h3 = try st(path), h4 = try st(path)
            b.edge(esc, UInt8(ascii: "u"), u)
            let hex = ByteSet(Array("0123456789abcdefABCDEF".utf8))
            b.edge(u, hex.subtracting(ByteSet(Array("dD".utf8))), h2)
            b.edge(u, ByteSet(Array("dD".utf8)), h2low)
            b.edge(h2low, ByteSet(range: 0x30...0x37), h3)
            b.edge(h2, hex, h3)
            b.edge(h3, hex, h4)
            b.edge(h4, hex, to)
        }
        try nonASCII(from: from, to: to, path: path)
    }

    /// Any non-ASCII scalar as well-formed UTF-8.
    func nonASCII(from: Int32, to: Int32, path: String) throws(SchemaError) {
        let c1 = try st(path), c2 = try st(path), c3 = try st(path)
        let cont = ByteSet(range: 0x80...0xBF)
        b.edge(c1, cont, to)
        b.edge(c2, cont, c1)
        b.edge(c3, cont, c2)
        b.edge(from, ByteSet(range: 0xC2...0xDF), c1)
        b.edge(from, ByteSet(range: 0xE1...0xEC).union(ByteSet(range: 0xEE...0xEF)), c2)
        b.edge(from, ByteSet(range: 0xF1...0xF3), c3)
        let e0 = try st(path), ed = try st(path), f0 = try st(path), f4 = try st(path)
        b.edge(from, 0xE0, e0)
        b.edge(e0, ByteSet(range: 0xA0...0xBF), c1)
        b.edge(from, 0xED, ed)
        b.edge(ed, ByteSet(range: 0x80...0x9F), c1)
        b.edge(from, 0xF0, f0)
        b.edge(f0, ByteSet(range: 0x90...0xBF), c2)
        b.edge(from, 0xF4, f4)
        b.edge(f4, ByteSet(range: 0x80...0x8F), c2)
    }

    /// A pattern over characters, as the JSON-encoded bytes of those characters.
    func compile(_ p: Pattern, from: Int32, to: Int32, path: String, keyword: String) throws(SchemaError) {
        switch p {
        case .chars(let set):
            var direct = ByteSet()
            for c in set.ascii.members {
                if c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") || c < 0x20 {
                    let text = c < 0x20 ? JSONValue.escape(c) : "\\" + String(UnicodeScalar(c))
                    b.epsilon(try lit(from, text, path), to)
                } else {
                    direct.insert(c)
                }
            }
            if !direct.isEmpty { b.edge(from, direct, to) }
            switch set.nonASCII {
            case .none: break
            case .all: try nonASCII(from: from, to: to, path: path)
            case .scalars(let scalars):
                for s in scalars { b.epsilon(try lit(from, String(Character(s)), path), to) }
            }
        case .sequence(let items):
            var at = from
            for (i, item) in items.enumerated() {
                let next = i == items.count - 1 ? to : try st(path)
                try compile(item, from: at, to: next, path: path, keyword: keyword)
                at = next
            }
            if items.isEmpty { b.epsilon(from, to) }
        case .alternatives(let alts):
            for a in alts { try compile(a, from: from, to: to, path: path, keyword: keyword) }
        case .repetition(let inner, let lo, let hi):
            guard max(lo, hi ?? lo) <= limits.maxCount else {
                throw error(keyword, path, "'\(keyword)': repetition counts above \(limits.maxCount) are not supported")
            }
            var at = from
            for _ in 0..<lo {
                let next = try st(path)
                try compile(inner, from: at, to: next, path: path, keyword: keyword)
                at = next
            }
            if let hi {
                for _ in lo..<hi {
                    let next = try st(path)
                    b.epsilon(at, to)
                    try compile(inner, from: at, to: next, path: path, keyword: keyword)
                    at = next
                }
                b.epsilon(at, to)
            } else {
                let loop = try st(path)
                b.epsilon(at, loop)
                let back = try st(path)
                try compile(inner, from: loop, to: back, path: path, keyword: keyword)
                b.epsilon(back, loop)
                b.epsilon(loop, to)
            }
        }
    }

    // MARK: Numbers

    private mutating func integer(_ schema: JSONValue, path: String) throws(SchemaError) -> Int32 {
        let cap = Int(pow10(limits.maxDigits)) - 1
        var lo = -cap, hi = cap
        for (k, v) in [("minimum", schema["minimum"]), ("exclusiveMinimum", schema["exclusiveMinimum"]),
                       ("maximum", schema["maximum"]), ("exclusiveMaximum", schema["exclusiveMaximum"])] {
            guard let v else { continue }
            guard let d = v.numberValue, d.isFinite else { throw error(k, path, "'\(k)' must be a number") }
            let c = max(min(d, Double(cap) + 1), -Double(cap) - 1)
            switch k {
            case "minimum": lo = max(lo, Int(c.rounded(.up)))
            case "exclusiveMinimum": lo = max(lo, Int(c.rounded(.down)) + 1)
            case "maximum": hi = min(hi, Int(c.rounded(.down)))
            default: hi = min(hi, Int(c.rounded(.up)) - 1)
            }
        }
        guard lo <= hi else { throw error("minimum", path, "no integer lies between 'minimum' and 'maximum'") }
        let (s, e) = try newRule(path)
        if hi >= 0 { try digits(from: s, to: e, lo: max(lo, 0), hi: hi, path: path) }
        if lo < 0 {
            let minus = try lit(s, "-", path)
            // -0 is 0: the negative branch covers magnitudes from 1 (or more, below a negative maximum).
            try digits(from: minus, to: e, lo: hi < 0 ? -hi : 1, hi: -lo, path: path)
        }
        return s
    }

    func pow10(_ n: Int) -> Double {
        var r = 1.0
        for _ in 0..<n { r *= 10 }
        return r
    }

    /// Decimal numerals without leading zeros for the integers in lo...hi (0 <= lo <= hi).
    func digits(from: Int32, to: Int32, lo: Int, hi: Int, path: String) throws(SchemaError) {
        let loDigits = String(lo).count, hiDigits = String(hi).count
        for length in loDigits...hiDigits {
            let first = length == 1 ? 0 : Int(pow10(length - 1))
            let a = max(lo, first), z = min(hi, Int(pow10(length)) - 1)
            guard a <= z else { continue }
            try fixedLength(from: from, to: to, Array(String(a).utf8), Array(String(z).utf8), path: path)
        }
    }

    /// Digit strings of one length between `x` and `y` (inclusive, as strings of equal length).
    func fixedLength(from: Int32, to: Int32, _ x: [UInt8], _ y: [UInt8], path: String) throws(SchemaError) {
        guard let x0 = x.first, let y0 = y.first else {
            b.epsilon(from, to)
            return
        }
        let zeros = x.allSatisfy { $0 == 0x30 }, nines = y.allSatisfy { $0 == 0x39 }
        if zeros && nines {
            var at = from
            for i in 0..<x.count {
                let next = i == x.count - 1 ? to : try st(path)
                b.edge(at, ByteSet(range: 0x30...0x39), next)
                at = next
            }
            return
        }
        if x0 == y0 {
            let s = try st(path)
            b.edge(from, x0, s)
            try fixedLength(from: s, to: to, Array(x.dropFirst()), Array(y.dropFirst()), path: path)
            return
        }
        let rest = x.count - 1
        let s1 = try st(path)
        b.edge(from, x0, s1)
        try fixedLength(from: s1, to: to, Array(x.dropFirst()), [UInt8](repeating: 0x39, count: rest), path: path)
        if x0 + 1 <= y0 - 1 {
            let s2 = try st(path)
            b.edge(from, ByteSet(range: (x0 + 1)...(y0 - 1)), s2)
            try fixedLength(from: s2, to: to, [UInt8](repeating: 0x30, count: rest), [UInt8](repeating: 0x39, count: rest), path: path)
        }
        let s3 = try st(path)
        b.edge(from, y0, s3)
        try fixedLength(from: s3, to: to, [UInt8](repeating: 0x30, count: rest), Array(y.dropFirst()), path: path)
    }

    private mutating func number(_ schema: JSONValue, path: String) throws(SchemaError) -> Int32 {
        for k in ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"] where schema[k] != nil {
            throw error(k, path, "'\(k)' is supported for integers only, not for 'number'")
        }
        let (s, e) = try newRule(path)
        let m = try st(path)
        b.epsilon(s, m)
        b.edge(s, UInt8(ascii: "-"), m)
        let intEnd = try st(path)
        b.edge(m, UInt8(ascii: "0"), intEnd)
        var at = try st(path)
        b.edge(m, ByteSet(range: 0x31...0x39), at)
        b.epsilon(at, intEnd)
        for _ in 1..<limits.maxDigits {
            let next = try st(path)
            b.edge(at, ByteSet(range: 0x30...0x39), next)
            b.epsilon(next, intEnd)
            at = next
        }
        let fracEnd = try st(path)
        b.epsilon(intEnd, fracEnd)
        at = try lit(intEnd, ".", path)
        for _ in 0..<limits.maxDigits {
            let next = try st(path)
            b.edge(at, ByteSet(range: 0x30...0x39), next)
            b.epsilon(next, fracEnd)
            at = next
        }
        b.epsilon(fracEnd, e)
        let exp = try st(path), sign = try st(path), x1 = try st(path), x2 = try st(path)
        b.edge(fracEnd, ByteSet(Array("eE".utf8)), exp)
        b.epsilon(exp, sign)
        b.edge(exp, ByteSet(Array("+-".utf8)), sign)
        b.edge(sign, ByteSet(range: 0x30...0x39), x1)
        b.edge(x1, ByteSet(range: 0x30...0x39), x2)
        b.epsilon(x1, e)
        b.epsilon(x2, e)
        return s
    }

    // MARK: Free-form JSON

    /// Any JSON value (one shared, recursive rule; nesting is bounded at run time).
    mutating func anyValue(_ path: String) throws(SchemaError) -> Int32 {
        if let r = genericValue { return r }
        let (s, e) = try newRule(path)
        genericValue = s
        let str = try anyString(path)
        b.call(s, rule: str, then: e)
        b.call(s, rule: try number(.object([]), path: path), then: e)
        for w in ["true", "false", "null"] { b.epsilon(try lit(s, w, path), e) }
        // Objects: { ws } or { ws "k" ws : ws v (ws , ws "k" ws : ws v)* ws }
        let open = try ws(try lit(s, "{", path), path)
        b.epsilon(try lit(open, "}", path), e)
        let member = try st(path), afterKey = try st(path), afterValue = try st(path)
        b.epsilon(open, member)
        b.call(member, rule: str, then: afterKey)
        b.call(try ws(try lit(try ws(afterKey, path), ":", path), path), rule: s, then: afterValue)
        let sep = try ws(afterValue, path)
        b.epsilon(try ws(try lit(sep, ",", path), path), member)
        b.epsilon(try lit(sep, "}", path), e)
        // Arrays likewise.
        let aopen = try ws(try lit(s, "[", path), path)
        b.epsilon(try lit(aopen, "]", path), e)
        let item = try st(path), afterItem = try st(path)
        b.epsilon(aopen, item)
        b.call(item, rule: s, then: afterItem)
        let asep = try ws(afterItem, path)
        b.epsilon(try ws(try lit(asep, ",", path), path), item)
        b.epsilon(try lit(asep, "]", path), e)
        return s
    }
}
