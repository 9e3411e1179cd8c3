import Foundation

/// Positional and keyword arguments of a filter, test or method call.
struct Arguments {
    var positional: [JinjaValue]
    var keywords: [String: JinjaValue]

    /// The argument at `index` or named `name`; nil when absent, none or undefined.
    func get(_ index: Int, _ name: String) -> JinjaValue? {
        let value = index < positional.count ? positional[index] : keywords[name]
        switch value {
        case nil, .undefined?, .none?: return nil
        default: return value
        }
    }

    func string(_ index: Int, _ name: String) -> String? { get(index, name)?.stringValue }
    func int(_ index: Int, _ name: String) -> Int? { get(index, name)?.intLike }
    func bool(_ index: Int, _ name: String) -> Bool { get(index, name)?.isTruthy ?? false }
}

// MARK: - Filters

extension Interpreter {
    func applyFilter(_ name: String, _ value: JinjaValue, _ positional: [JinjaValue],
                     _ keywords: [String: JinjaValue]) throws -> JinjaValue {
        let args = Arguments(positional: positional, keywords: keywords)
        try spend(1 + size(value))
        switch name {
        case "trim":
            return .string(PyString.strip(value.stringValue, args.string(0, "chars"), leading: true, trailing: true))
        case "length", "count":
            switch value {
            case .string(let s): return .int(s.unicodeScalars.count)
            case .array(let a): return .int(a.count)
            case .object(let o): return .int(o.count)
            case .undefined: return .int(0)
            default: throw TemplateError.runtime("object of type '\(value.typeName)' has no len()", line: 0)
            }
        case "tojson":
            let indent = args.int(0, "indent").map { max(0, $0) }
            guard (indent ?? 0) <= 64 else { throw TemplateError.unsupported("tojson indent over 64", line: 0) }
            var out = ""
            var writer = JSONWriter(sortKeys: true, indent: indent, asciiOnly: true, htmlSafe: true)
            writer.limit = Self.maxLength
            writer.write(value, into: &out, level: 0)
            try checkLength(out.utf8.count)
            return .string(out)
        case "upper": return .string(value.stringValue.uppercased())
        case "lower": return .string(value.stringValue.lowercased())
        case "capitalize": return .string(PyString.capitalize(value.stringValue))
        case "title": return .string(PyString.jinjaTitle(value.stringValue))
        case "first":
            return try value.iterated().first ?? .undefined
        case "last":
            if case .object = value { throw TemplateError.runtime("cannot take 'last' of a dict", line: 0) }
            return try value.iterated().last ?? .undefined
        case "join":
            var items = try value.iterated()
            if let attribute = args.string(1, "attribute") { items = items.map { attributePath($0, attribute) } }
            return .string(try joined(items, separator: args.string(0, "d") ?? ""))
        case "default", "d":
            let fallback = (0 < positional.count ? positional[0] : keywords["default_value"]) ?? .string("")
            let useBoolean = args.bool(1, "boolean")
            return value.isUndefined || (useBoolean && !value.isTruthy) ? fallback : value
        case "replace":
            guard let old = args.string(0, "old"), let new = args.string(1, "new") else {
                throw TemplateError.runtime("replace() needs two arguments", line: 0)
            }
            return .string(try replaced(value.stringValue, old, new, count: args.int(2, "count")))
        case "string":
            return .string(value.stringValue)
        case "int":
            return toInt(value) ?? (args.get(0, "default") ?? .int(0))
        case "float":
            return toFloat(value) ?? (args.get(0, "default") ?? .double(0))
        case "list":
            return .array(try value.iterated())
        case "items":
            switch value {
            case .object(let o): return .array(o.map { .array([.string($0.key), $0.value]) })
            case .undefined: return .array([])
            default: throw TemplateError.runtime("'items' filter needs a mapping, got \(value.typeName)", line: 0)
            }
        case "dictsort":
            guard case .object(let o) = value else { throw TemplateError.runtime("dictsort needs a mapping", line: 0) }
            let byValue = args.string(2, "by") == "value"
            let caseSensitive = args.bool(0, "case_sensitive")
            var pairs = o.map { JinjaValue.array([.string($0.key), $0.value]) }
            try sortValues(&pairs, caseSensitive: caseSensitive) { pair in
                guard case .array(let kv) = pair else { return pair }
                return byValue ? kv[1] : kv[0]
            }
            if args.bool(1, "reverse") { pairs.reverse() }
            return .array(pairs)
        case "map":
            let items = try value.iterated()
            if let attribute = args.string(99, "attribute") {
                let fallback = keywords["default"]
                return .array(items.map {
                    let v = attributePath($0, attribute)
                    return v.isUndefined ? (fallback ?? v) : v
                })
            }
            guard let filterName = args.string(0, "") else { throw TemplateError.runtime("map() needs a filter name", line: 0) }
            let rest = Array(positional.dropFirst())
            return .array(try items.map { try applyFilter(filterName, $0, rest, keywords) })
        case "select", "reject":
            let keep = name == "select"
            let items = try value.iterated()
            let testName = args.string(0, "")
            let rest = Array(positional.dropFirst())
            return .array(try items.filter { item in
                let passed = try testName.map { try applyTest($0, item, rest) } ?? item.isTruthy
                return passed == keep
            })
        case "selectattr", "rejectattr":
            let keep = name == "selectattr"
            let items = try value.iterated()
            guard let attribute = args.string(0, "") else { throw TemplateError.runtime("\(name)() needs an attribute", line: 0) }
            let testName = args.string(1, "")
            let rest = Array(positional.dropFirst(2))
            return .array(try items.filter { item in
                let v = attributePath(item, attribute)
                let passed = try testName.map { try applyTest($0, v, rest) } ?? v.isTruthy
                return passed == keep
            })
        case "attr":
            return attribute(of: value, args.string(0, "name") ?? "")
        case "safe":
            return value
        case "escape", "e", "forceescape":
            return .string(PyString.htmlEscape(value.stringValue))
        case "abs":
            switch value {
            case .int(let i): return .int(abs(i))
            case .double(let d): return .double(abs(d))
            case .bool(let b): return .int(b ? 1 : 0)
            default: throw TemplateError.runtime("bad operand type for abs(): '\(value.typeName)'", line: 0)
            }
        case "round":
            guard let number = value.number else { throw TemplateError.runtime("round() needs a number", line: 0) }
            let precision = args.int(0, "precision") ?? 0
            let scale = pow(10.0, Double(precision))
            let rule: FloatingPointRoundingRule = switch args.string(1, "method") ?? "common" {
            case "ceil": .up
            case "floor": .down
            default: .toNearestOrEven
            }
            return .double((number * scale).rounded(rule) / scale)
        case "unique":
            let caseSensitive = args.bool(0, "case_sensitive")
            let attribute = args.string(1, "attribute")
            var seen: [JinjaValue] = []
            var result: [JinjaValue] = []
            for item in try value.iterated() {
                var key = attribute.map { attributePath(item, $0) } ?? item
                if !caseSensitive, case .string(let s) = key { key = .string(s.lowercased()) }
                if !seen.contains(where: { $0.looselyEquals(key) }) {
                    seen.append(key)
                    result.append(item)
                }
            }
            return .array(result)
        case "sort":
            var items = try value.iterated()
            let attribute = args.string(2, "attribute")
            try sortValues(&items, caseSensitive: args.bool(1, "case_sensitive")) { item in
                attribute.map { self.attributePath(item, $0) } ?? item
            }
            if args.bool(0, "reverse") { items.reverse() }
            return .array(items)
        case "reverse":
            if case .string(let s) = value { return .string(String(s.reversed())) }
            return .array(try value.iterated().reversed())
        case "indent":
            let width = args.get(0, "width") ?? .int(4)
            let indentation: String
            if case .string(let s) = width {
                indentation = s
            } else {
                let n = max(0, width.intLike ?? 4)
                try checkLength(n)
                indentation = String(repeating: " ", count: n)
            }
            let text = value.stringValue
            let lines = text.utf8.count(where: { $0 == 0x0A }) + 1
            let (extra, overflow) = lines.multipliedReportingOverflow(by: indentation.utf8.count)
            try checkLength(overflow ? Int.max : text.utf8.count + extra)
            return .string(PyString.indent(value.stringValue, indentation, first: args.bool(1, "first"), blank: args.bool(2, "blank")))
        case "sum":
            var total: JinjaValue = args.get(1, "start") ?? .int(0)
            let attribute = args.string(0, "attribute")
            for item in try value.iterated() {
                total = try binaryAdd(total, attribute.map { attributePath(item, $0) } ?? item)
            }
            return total
        case "min", "max":
            var items = try value.iterated()
            let attribute = args.string(1, "attribute")
            try sortValues(&items, caseSensitive: args.bool(0, "case_sensitive")) { item in
                attribute.map { self.attributePath(item, $0) } ?? item
            }
            return (name == "min" ? items.first : items.last) ?? .undefined
        case "wordcount":
            return .int(PyString.split(value.stringValue, nil, maxSplit: -1).count)
        case "center":
            let width = args.int(0, "width") ?? 80
            let s = value.stringValue
            try checkLength(s.utf8.count + max(0, width))
            let padding = max(0, width - s.count)
            let left = padding / 2 + (padding & width & 1)
            return .string(String(repeating: " ", count: left) + s + String(repeating: " ", count: padding - left))
        default:
            throw TemplateError.unsupported("filter '\(name)'", line: 0)
        }
    }

    private func binaryAdd(_ a: JinjaValue, _ b: JinjaValue) throws -> JinjaValue {
        try eval(.binary("+", .literal(a), .literal(b)))
    }

    /// Looks up `a.b.c` (dotted attribute or integer index path), as jinja2's `make_attrgetter` does.
    func attributePath(_ value: JinjaValue, _ path: String) -> JinjaValue {
        var current = value
        for part in path.split(separator: ".") {
            if let index = Int(part), case .array = current {
                current = (try? item(of: current, .int(index))) ?? .undefined
            } else {
                current = attribute(of: current, String(part))
            }
        }
        return current
    }

    private func sortValues(_ items: inout [JinjaValue], caseSensitive: Bool, key: (JinjaValue) -> JinjaValue) throws {
        func normalized(_ v: JinjaValue) -> JinjaValue {
            if !caseSensitive, case .string(let s) = v { return .string(s.lowercased()) }
            return v
        }
        var failure: Error?
        items = items.map { ($0, normalized(key($0))) }.enumerated().sorted { lhs, rhs in
            do {
                if try compare("<", lhs.element.1, rhs.element.1) { return true }
                if try compare(">", lhs.element.1, rhs.element.1) { return false }
            } catch {
                failure = error
            }
            return lhs.offset < rhs.offset  // stable, like Python's sort
        }.map(\.element.0)
        if let failure { throw failure }
    }

    private func toInt(_ value: JinjaValue) -> JinjaValue? {
        switch value {
        case .int: return value
        case .bool(let b): return .int(b ? 1 : 0)
        case .double(let d): return Int(exactly: d.rounded(.towardZero)).map { .int($0) }  // nil past Int's range
        case .string(let s):
            let t = s.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "_", with: "")
            if let i = Int(t) { return .int(i) }
            if let d = Double(t), let i = Int(exactly: d.rounded(.towardZero)) { return .int(i) }
            return nil
        default: return nil
        }
    }

    private func toFloat(_ value: JinjaValue) -> JinjaValue? {
        switch value {
        case .double: return value
        case .int, .bool: return .double(value.number!)
        case .string(let s):
            return Double(s.trimmingCharacters(in: .whitespacesAndNewlines)).map { .double($0) }
        default: return nil
        }
    }
}

// MARK: - Tests (`is ...`)

extension Interpreter {
    func applyTest(_ name: String, _ value: JinjaValue, _ args: [JinjaValue]) throws -> Bool {
        func argument() throws -> JinjaValue {
            guard let first = args.first else { throw TemplateError.runtime("test '\(name)' needs an argument", line: 0) }
            return first
        }
        switch name {
        case "defined": return !value.isUndefined
        case "undefined": return value.isUndefined
        case "none": return value == .none
        case "boolean": if case .bool = value { return true } else { return false }
        case "true": return value == .bool(true)
        case "false": return value == .bool(false)
        case "integer": if case .int = value { return true } else { return false }
        case "float": if case .double = value { return true } else { return false }
        case "number": return value.number != nil
        case "string": if case .string = value { return true } else { return false }
        case "mapping": if case .object = value { return true } else { return false }
        case "iterable", "sequence":
            switch value {
            case .string, .array, .object, .undefined: return true
            default: return false
            }
        case "callable": if case .function = value { return true } else { return false }
        case "odd": return (value.intLike ?? 0) % 2 != 0
        case "even": return (value.intLike ?? 1) % 2 == 0
        case "divisibleby":
            guard let a = value.intLike, let b = try argument().intLike, b != 0 else { return false }
            return a % b == 0
        case "equalto", "eq", "==": return try compare("==", value, argument())
        case "ne", "!=": return try compare("!=", value, argument())
        case "lt", "lessthan", "<": return try compare("<", value, argument())
        case "le", "<=": return try compare("<=", value, argument())
        case "gt", "greaterthan", ">": return try compare(">", value, argument())
        case "ge", ">=": return try compare(">=", value, argument())
        case "in": return try contains(argument(), value)
        case "sameas": return value == (try argument())
        case "lower":
            let s = value.stringValue
            return s == s.lowercased() && s != s.uppercased()
        case "upper":
            let s = value.stringValue
            return s == s.uppercased() && s != s.lowercased()
        case "escaped": return false
        case "filter", "test": return false
        default:
            throw TemplateError.unsupported("test '\(name)'", line: 0)
        }
    }
}

// MARK: - Methods (`x.strip()`, `d.items()`)

extension Interpreter {
    /// Calls a Python-style method; nil when the receiver has no such method.
    func callMethod(_ receiver: JinjaValue, _ name: String, _ positional: [JinjaValue],
                    _ keywords: [String: JinjaValue]) throws -> JinjaValue? {
        let args = Arguments(positional: positional, keywords: keywords)
        try spend(1 + size(receiver))
        switch receiver {
        case .string(let s):
            switch name {
            case "strip": return .string(PyString.strip(s, args.string(0, "chars"), leading: true, trailing: true))
            case "lstrip": return .string(PyString.strip(s, args.string(0, "chars"), leading: true, trailing: false))
            case "rstrip": return .string(PyString.strip(s, args.string(0, "chars"), leading: false, trailing: true))
            case "upper": return .string(s.uppercased())
            case "lower": return .string(s.lowercased())
            case "title": return .string(PyString.title(s))
            case "capitalize": return .string(PyString.capitalize(s))
            case "startswith", "endswith":
                let candidates: [JinjaValue]
                switch args.get(0, "prefix") {
                case .array(let a)?: candidates = a
                case let v?: candidates = [v]
                case nil: throw TemplateError.runtime("\(name)() needs an argument", line: 0)
                }
                return .bool(candidates.contains { c in
                    let t = c.stringValue
                    return name == "startswith"
                        ? s.unicodeScalars.starts(with: t.unicodeScalars)
                        : s.unicodeScalars.reversed().starts(with: t.unicodeScalars.reversed())
                })
            case "split":
                return .array(PyString.split(s, args.string(0, "sep"), maxSplit: args.int(1, "maxsplit") ?? -1).map { .string($0) })
            case "rsplit" where args.get(1, "maxsplit") == nil:
                return .array(PyString.split(s, args.string(0, "sep"), maxSplit: -1).map { .string($0) })
            case "splitlines":
                return .array(s.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
                    .map { .string(String($0)) }.dropLast(s.last?.isNewline == true ? 1 : 0))
            case "replace":
                guard let old = args.string(0, "old"), let new = args.string(1, "new") else {
                    throw TemplateError.runtime("replace() needs two arguments", line: 0)
                }
                return .string(try replaced(s, old, new, count: args.int(2, "count")))
            case "find":
                let needle = args.string(0, "sub") ?? ""
                guard let range = s.range(of: needle) else { return .int(-1) }
                return .int(s.unicodeScalars.distance(from: s.startIndex, to: range.lowerBound))
            case "count":
                let needle = args.string(0, "sub") ?? ""
                return .int(needle.isEmpty ? s.unicodeScalars.count + 1 : s.components(separatedBy: needle).count - 1)
            case "join":
                return .string(try joined(args.get(0, "iterable").map { try $0.iterated() } ?? [], separator: s))
            case "isdigit": return .bool(!s.isEmpty && s.allSatisfy(\.isNumber))
            case "isalpha": return .bool(!s.isEmpty && s.allSatisfy(\.isLetter))
            case "isalnum": return .bool(!s.isEmpty && s.allSatisfy { $0.isLetter || $0.isNumber })
            case "isspace": return .bool(!s.isEmpty && s.allSatisfy(\.isWhitespace))
            case "isupper": return .bool(s == s.uppercased() && s != s.lowercased())
            case "islower": return .bool(s == s.lowercased() && s != s.uppercased())
            default: return nil
            }
        case .object(let o):
            switch name {
            case "items": return .array(o.map { .array([.string($0.key), $0.value]) })
            case "keys": return .array(o.keys.map { .string($0) })
            case "values": return .array(o.values)
            case "get":
                let key = positional.first?.stringValue ?? ""
                return o[key] ?? (positional.count > 1 ? positional[1] : .none)
            case "cycle" where o["index0"] != nil && o["revindex"] != nil:
                guard !positional.isEmpty, let i = o["index0"]?.intLike else { return .undefined }
                return positional[i % positional.count]
            default: return nil
            }
        case .array(let a):
            switch name {
            case "index":
                guard let target = positional.first, let i = a.firstIndex(where: { $0.looselyEquals(target) }) else {
                    throw TemplateError.runtime("value is not in list", line: 0)
                }
                return .int(i)
            case "count":
                guard let target = positional.first else { return .int(0) }
                return .int(a.filter { $0.looselyEquals(target) }.count)
            default: return nil
            }
        default:
            return nil
        }
    }
}

extension Interpreter {
    /// `items` joined as text, within the length limit.
    func joined(_ items: [JinjaValue], separator: String) throws -> String {
        let strings = items.map(\.stringValue)
        var total = separator.utf8.count * max(0, strings.count - 1)
        for s in strings { total += s.utf8.count; if total > Self.maxLength { break } }
        try checkLength(total)
        return strings.joined(separator: separator)
    }

    /// Python's `replace`, within the length limit (each occurrence may grow the text).
    func replaced(_ s: String, _ old: String, _ new: String, count: Int?) throws -> String {
        if new.utf8.count > old.utf8.count, !old.isEmpty {
            var occurrences = 0
            var rest = Substring(s)
            while count.map({ $0 < 0 || occurrences < $0 }) ?? true, let range = rest.range(of: old) {
                occurrences += 1
                rest = rest[range.upperBound...]
            }
            try spend(occurrences)
            let (growth, overflow) = occurrences.multipliedReportingOverflow(by: new.utf8.count - old.utf8.count)
            try checkLength(overflow ? Int.max : s.utf8.count + growth)
        }
        return PyString.replace(s, old, new, count: count)
    }
}

// MARK: - Python string helpers

enum PyString {
    static func isSpace(_ s: Unicode.Scalar) -> Bool { s.properties.isWhitespace || (0x1C...0x1F).contains(s.value) }

    static func strip(_ s: String, _ chars: String?, leading: Bool, trailing: Bool) -> String {
        let set = chars.map { Set($0.unicodeScalars) }
        let shouldStrip: (Unicode.Scalar) -> Bool = { set?.contains($0) ?? isSpace($0) }
        var scalars = Substring(s).unicodeScalars[...]
        if leading { while let f = scalars.first, shouldStrip(f) { scalars.removeFirst() } }
        if trailing { while let l = scalars.last, shouldStrip(l) { scalars.removeLast() } }
        return String(String.UnicodeScalarView(scalars))
    }

    static func capitalize(_ s: String) -> String {
        guard let first = s.first else { return s }
        return String(first).uppercased() + s.dropFirst().lowercased()
    }

    /// Python's `str.title()`: a cased character after an uncased one starts a word.
    static func title(_ s: String) -> String {
        var out = ""
        var previousCased = false
        for ch in s {
            let cased = ch.isUppercase || ch.isLowercase
            out += cased ? (previousCased ? ch.lowercased() : ch.uppercased()) : String(ch)
            previousCased = cased
        }
        return out
    }

    /// jinja2's `title` filter: words start after spaces, `-`, and opening brackets.
    static func jinjaTitle(_ s: String) -> String {
        var out = ""
        var atWordStart = true
        for ch in s {
            let separator = ch.isWhitespace || "-({[<".contains(ch)
            if separator {
                out.append(ch)
                atWordStart = true
            } else {
                out += atWordStart ? ch.uppercased() : ch.lowercased()
                atWordStart = false
            }
        }
        return out
    }

    static func replace(_ s: String, _ old: String, _ new: String, count: Int?) -> String {
        guard let count, count >= 0 else { return s.replacingOccurrences(of: old, with: new) }
        var result = ""
        var rest = Substring(s)
        var done = 0
        while done < count, !old.isEmpty, let range = rest.range(of: old) {
            result += rest[..<range.lowerBound] + new
            rest = rest[range.upperBound...]
            done += 1
        }
        return result + rest
    }

    static func split(_ s: String, _ separator: String?, maxSplit: Int) -> [String] {
        if let separator, !separator.isEmpty {
            var parts: [String] = []
            var rest = Substring(s)
            while maxSplit < 0 || parts.count < maxSplit, let range = rest.range(of: separator) {
                parts.append(String(rest[..<range.lowerBound]))
                rest = rest[range.upperBound...]
            }
            parts.append(String(rest))
            return parts
        }
        var parts: [String] = []
        var current = String.UnicodeScalarView()
        var scalars = s.unicodeScalars[...]
        while let scalar = scalars.first {
            scalars.removeFirst()
            if isSpace(scalar) {
                if !current.isEmpty {
                    parts.append(String(current))
                    current = String.UnicodeScalarView()
                    if maxSplit >= 0, parts.count == maxSplit {
                        while let f = scalars.first, isSpace(f) { scalars.removeFirst() }
                        if !scalars.isEmpty { parts.append(String(String.UnicodeScalarView(scalars))) }
                        return parts
                    }
                }
            } else {
                current.append(scalar)
            }
        }
        if !current.isEmpty { parts.append(String(current)) }
        return parts
    }

    static func htmlEscape(_ s: String) -> String {
        var out = ""
        for ch in s {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&#34;"
            case "'": out += "&#39;"
            default: out.append(ch)
            }
        }
        return out
    }

    /// jinja2's `indent` filter.
    static func indent(_ s: String, _ indentation: String, first: Bool, blank: Bool) -> String {
        let lines = (s + "\n").split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).dropLast().map(String.init)
        var result: String
        if blank {
            result = lines.joined(separator: "\n" + indentation)
        } else {
            result = lines.first ?? ""
            let rest = lines.dropFirst()
            if !rest.isEmpty {
                result += "\n" + rest.map { $0.isEmpty ? $0 : indentation + $0 }.joined(separator: "\n")
            }
        }
        return first ? indentation + result : result
    }
}
