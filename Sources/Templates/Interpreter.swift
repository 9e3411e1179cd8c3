import Foundation

/// Evaluates a parsed template against a context. One interpreter serves one render call.
final class Interpreter {
    enum Flow { case normal, breakLoop, continueLoop }

    /// Scope stack: globals, the render context (where top-level `set` writes), then loop/macro frames.
    private var frames: [[String: JinjaValue]]
    let now: Date

    // Bounds on one render. Templates come with model files: a hostile one must end in a TemplateError,
    // not exhaust the stack, memory or time. Real chat templates stay far below them.
    /// Expressions evaluated and statements executed, plus the size of bulk work (filters, joins).
    static let maxSteps = 1_000_000
    /// Nesting of evaluation (expressions within expressions, blocks, macro calls).
    static let maxDepth = 200
    /// Bytes of any string and of the output; elements of any list.
    static let maxLength = 16 << 20
    static let maxItems = 1 << 20
    /// Nesting of lists and dicts in a value stored by `set`.
    static let maxValueNesting = 100
    private var steps = 0
    private var depth = 0

    static let builtinNames = ["range", "namespace", "dict", "raise_exception", "strftime_now"]

    init(context: [String: JinjaValue], now: Date) {
        var globals: [String: JinjaValue] = [:]
        for name in Self.builtinNames { globals[name] = .function(JinjaFunction(name: name, kind: .builtin)) }
        frames = [globals, context]
        self.now = now
    }

    // MARK: Statements

    func render(_ nodes: [Node], into out: inout String) throws -> Flow {
        for node in nodes {
            let flow = try execute(node, into: &out)
            if flow != .normal { return flow }
        }
        return .normal
    }

    /// Counts one step and one level of nesting (the caller undoes the level with `depth -= 1`).
    @inline(__always)
    private func enter() throws {
        try spend(1)
        guard depth < Self.maxDepth else {
            throw TemplateError.runtime("the template nests too deeply (over \(Self.maxDepth) levels)", line: 0)
        }
        depth += 1
    }

    /// Charges `n` steps of work.
    @inline(__always)
    func spend(_ n: Int) throws {
        steps += n
        guard steps <= Self.maxSteps else {
            throw TemplateError.runtime("the template does too much work (over \(Self.maxSteps) steps)", line: 0)
        }
    }

    /// Throws unless a string of `bytes` bytes is allowed; charges the work of building it.
    func checkLength(_ bytes: Int) throws {
        guard bytes <= Self.maxLength else {
            throw TemplateError.runtime("the template builds a string over \(Self.maxLength) bytes", line: 0)
        }
        try spend(bytes / 256)
    }

    /// Throws unless a list of `count` items is allowed; charges the work of building it.
    func checkItems(_ count: Int) throws {
        guard count <= Self.maxItems else {
            throw TemplateError.runtime("the template builds a list over \(Self.maxItems) items", line: 0)
        }
        try spend(count / 16)
    }

    /// The work of reading a value once (charged by filters and methods that walk their input).
    func size(_ value: JinjaValue) -> Int {
        switch value {
        case .string(let s): s.utf8.count / 256
        case .array(let a): a.count
        case .object(let o): o.count
        default: 0
        }
    }

    /// Nesting of lists and dicts, counting each container visited as a step; throws past the limit.
    private func checkNesting(_ value: JinjaValue, level: Int = 0) throws {
        switch value {
        case .array(let a):
            guard level < Self.maxValueNesting else { throw tooNested }
            try spend(a.count)
            for item in a { try checkNesting(item, level: level + 1) }
        case .object(let o):
            guard level < Self.maxValueNesting else { throw tooNested }
            try spend(o.count)
            for item in o.values { try checkNesting(item, level: level + 1) }
        default:
            break
        }
    }

    private var tooNested: TemplateError {
        .runtime("the template builds a value nested over \(Self.maxValueNesting) levels", line: 0)
    }

    private func execute(_ node: Node, into out: inout String) throws -> Flow {
        try enter()
        defer { depth -= 1 }
        let flow = try executeNode(node, into: &out)
        if out.utf8.count > Self.maxLength {
            throw TemplateError.runtime("the template's output exceeds \(Self.maxLength) bytes", line: 0)
        }
        return flow
    }

    private func executeNode(_ node: Node, into out: inout String) throws -> Flow {
        switch node {
        case .text(let text):
            out += text
        case .output(let expr, let line):
            try withLine(line) { out += try eval(expr).stringValue }
        case .ifBlock(let branches, let otherwise, let line):
            for branch in branches {
                if try withLine(line, { try eval(branch.test).isTruthy }) {
                    return try render(branch.body, into: &out)
                }
            }
            return try render(otherwise, into: &out)
        case .forBlock(let loop):
            return try executeFor(loop, into: &out)
        case .set(let target, let expr, let line):
            try withLine(line) { try assign(target, try eval(expr)) }
        case .setBlock(let name, let body, let filters, let line):
            var captured = ""
            _ = try render(body, into: &captured)
            try withLine(line) { frames[frames.count - 1][name] = try applyFilters(filters, to: .string(captured)) }
        case .filterBlock(let body, let filters, let line):
            var captured = ""
            _ = try render(body, into: &captured)
            try withLine(line) { out += try applyFilters(filters, to: .string(captured)).stringValue }
        case .macro(let macro):
            frames[frames.count - 1][macro.name] = .function(JinjaFunction(name: macro.name, kind: .macro(macro)))
        case .with(let assignments, let body):
            var frame: [String: JinjaValue] = [:]
            for (name, expr) in assignments { frame[name] = try eval(expr) }
            frames.append(frame)
            defer { frames.removeLast() }
            return try render(body, into: &out)
        case .group(let body):
            return try render(body, into: &out)
        case .breakLoop:
            return .breakLoop
        case .continueLoop:
            return .continueLoop
        }
        return .normal
    }

    private func withLine<T>(_ line: Int, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as TemplateError {
            throw error.at(line: line)
        }
    }

    private func applyFilters(_ filters: [(name: String, args: [Argument])], to value: JinjaValue) throws -> JinjaValue {
        var result = value
        for filter in filters {
            let (positional, keywords) = try evalArguments(filter.args)
            result = try applyFilter(filter.name, result, positional, keywords)
        }
        return result
    }

    private func executeFor(_ loop: ForLoop, into out: inout String) throws -> Flow {
        var items = try withLine(loop.line) { try eval(loop.iterable).iterated() }
        if let condition = loop.condition {
            items = try items.filter { item in
                frames.append([:])
                defer { frames.removeLast() }
                try bind(loop.target, item, line: loop.line)
                return try withLine(loop.line) { try eval(condition).isTruthy }
            }
        }
        if items.isEmpty {
            _ = try render(loop.otherwise, into: &out)
            return .normal
        }
        let count = items.count
        for (i, item) in items.enumerated() {
            var info = JinjaObject()
            info["index"] = .int(i + 1)
            info["index0"] = .int(i)
            info["revindex"] = .int(count - i)
            info["revindex0"] = .int(count - i - 1)
            info["first"] = .bool(i == 0)
            info["last"] = .bool(i == count - 1)
            info["length"] = .int(count)
            info["previtem"] = i > 0 ? items[i - 1] : .undefined
            info["nextitem"] = i < count - 1 ? items[i + 1] : .undefined
            info["depth"] = .int(1)
            info["depth0"] = .int(0)
            frames.append(["loop": .object(info)])
            defer { frames.removeLast() }
            try bind(loop.target, item, line: loop.line)
            if try render(loop.body, into: &out) == .breakLoop { break }
        }
        return .normal
    }

    /// Binds loop variables in the innermost frame.
    private func bind(_ target: Target, _ value: JinjaValue, line: Int) throws {
        switch target {
        case .name(let name):
            frames[frames.count - 1][name] = value
        case .tuple(let names):
            let parts = try value.iterated()
            guard parts.count == names.count else {
                throw TemplateError.runtime("cannot unpack \(parts.count) values into \(names.count) names", line: line)
            }
            for (name, part) in zip(names, parts) { frames[frames.count - 1][name] = part }
        case .attribute:
            throw TemplateError.syntax("cannot assign to an attribute here", line: line)
        }
    }

    private func assign(_ target: Target, _ value: JinjaValue) throws {
        try checkNesting(value)
        switch target {
        case .name, .tuple:
            try bind(target, value, line: 0)
        case .attribute(let name, let key):
            guard let index = frames.lastIndex(where: { $0[name] != nil }),
                case .object(var object) = frames[index][name]!
            else {
                throw TemplateError.runtime("cannot set attribute '\(key)' on '\(name)': not a namespace", line: 0)
            }
            frames[index][name] = .undefined  // release the storage so the update below does not copy
            object[key] = value
            frames[index][name] = .object(object)
        }
    }

    func lookup(_ name: String) -> JinjaValue {
        for frame in frames.reversed() {
            if let value = frame[name] { return value }
        }
        return .undefined
    }

    // MARK: Expressions

    func eval(_ expr: Expr) throws -> JinjaValue {
        try enter()
        defer { depth -= 1 }
        let value = try evaluate(expr)
        switch value {
        case .string(let s) where s.utf8.count > Self.maxLength: try checkLength(s.utf8.count)
        case .array(let a) where a.count > Self.maxItems: try checkItems(a.count)
        default: break
        }
        return value
    }

    private func evaluate(_ expr: Expr) throws -> JinjaValue {
        switch expr {
        case .literal(let value):
            return value
        case .name(let name):
            return lookup(name)
        case .list(let items):
            return .array(try items.map(eval))
        case .dict(let pairs):
            var object = JinjaObject()
            for pair in pairs { object[try eval(pair.key).stringValue] = try eval(pair.value) }
            return .object(object)
        case .attribute(let base, let name):
            return attribute(of: try eval(base), name)
        case .item(let base, let key):
            return try item(of: try eval(base), try eval(key))
        case .slice(let base, let start, let stop, let step):
            return try slice(try eval(base), start: start.map(eval), stop: stop.map(eval), step: step.map(eval))
        case .call(let callee, let args):
            let (positional, keywords) = try evalArguments(args)
            if case .attribute(let receiverExpr, let method) = callee {
                let receiver = try eval(receiverExpr)
                if let result = try callMethod(receiver, method, positional, keywords) { return result }
                let member = attribute(of: receiver, method)
                guard case .function(let function) = member else {
                    throw TemplateError.unsupported("method '\(method)' on \(receiver.typeName)", line: 0)
                }
                return try call(function, positional, keywords)
            }
            let value = try eval(callee)
            guard case .function(let function) = value else {
                if case .name(let name) = callee, value.isUndefined {
                    throw TemplateError.unsupported("function '\(name)'", line: 0)
                }
                throw TemplateError.runtime("'\(value.typeName)' object is not callable", line: 0)
            }
            return try call(function, positional, keywords)
        case .filter(let base, let name, let args):
            let value = try eval(base)
            let (positional, keywords) = try evalArguments(args)
            return try applyFilter(name, value, positional, keywords)
        case .test(let base, let name, let args, let negated):
            let value = try eval(base)
            let (positional, _) = try evalArguments(args)
            return .bool(try applyTest(name, value, positional) != negated)
        case .unary(let op, let operand):
            let value = try eval(operand)
            switch (op, value) {
            case ("-", .int(let i)): return .int(-i)
            case ("-", .double(let d)): return .double(-d)
            case ("-", .bool(let b)): return .int(b ? -1 : 0)
            case ("+", .int), ("+", .double): return value
            default: throw TemplateError.runtime("bad operand type for unary \(op): '\(value.typeName)'", line: 0)
            }
        case .binary(let op, let lhs, let rhs):
            return try binary(op, try eval(lhs), try eval(rhs))
        case .and(let lhs, let rhs):
            let left = try eval(lhs)
            return left.isTruthy ? try eval(rhs) : left
        case .or(let lhs, let rhs):
            let left = try eval(lhs)
            return left.isTruthy ? left : try eval(rhs)
        case .not(let operand):
            return .bool(!(try eval(operand).isTruthy))
        case .compare(let first, let rest):
            var left = try eval(first)
            for (op, rhsExpr) in rest {
                let right = try eval(rhsExpr)
                if !(try compare(op, left, right)) { return .bool(false) }
                left = right
            }
            return .bool(true)
        case .conditional(let test, let then, let otherwise):
            if try eval(test).isTruthy { return try eval(then) }
            return try otherwise.map(eval) ?? .undefined
        }
    }

    func evalArguments(_ args: [Argument]) throws -> ([JinjaValue], [String: JinjaValue]) {
        var positional: [JinjaValue] = []
        var keywords: [String: JinjaValue] = [:]
        for arg in args {
            if let name = arg.name {
                keywords[name] = try eval(arg.value)
            } else {
                positional.append(try eval(arg.value))
            }
        }
        return (positional, keywords)
    }

    func attribute(of value: JinjaValue, _ name: String) -> JinjaValue {
        if case .object(let object) = value { return object[name] ?? .undefined }
        return .undefined
    }

    func item(of value: JinjaValue, _ key: JinjaValue) throws -> JinjaValue {
        switch (value, key) {
        case (.array(let array), _):
            guard let i = key.intLike else { return .undefined }
            let index = i < 0 ? array.count + i : i
            return array.indices.contains(index) ? array[index] : .undefined
        case (.string(let string), _):
            guard let i = key.intLike else { return .undefined }
            let chars = Array(string)
            let index = i < 0 ? chars.count + i : i
            return chars.indices.contains(index) ? .string(String(chars[index])) : .undefined
        case (.object(let object), _):
            return object[key.stringValue] ?? .undefined
        default:
            return .undefined
        }
    }

    private func slice(_ value: JinjaValue, start: JinjaValue?, stop: JinjaValue?, step: JinjaValue?) throws -> JinjaValue {
        func indices(count: Int) throws -> [Int] {
            func bound(_ v: JinjaValue?) throws -> Int? {
                guard let v, v != .none, !v.isUndefined else { return nil }
                guard let i = v.intLike else { throw TemplateError.runtime("slice indices must be integers", line: 0) }
                return i
            }
            let stepValue = try bound(step) ?? 1
            guard stepValue != 0 else { throw TemplateError.runtime("slice step cannot be zero", line: 0) }
            func clamp(_ i: Int?, _ defaultValue: Int) -> Int {
                guard var i else { return defaultValue }
                if i < 0 { i += count }
                return stepValue > 0 ? min(max(i, 0), count) : min(max(i, -1), count - 1)
            }
            let lo = clamp(try bound(start), stepValue > 0 ? 0 : count - 1)
            let hi = clamp(try bound(stop), stepValue > 0 ? count : -1)
            return Array(stride(from: lo, to: hi, by: stepValue))
        }
        switch value {
        case .array(let array):
            return .array(try indices(count: array.count).map { array[$0] })
        case .string(let string):
            let chars = Array(string)
            return .string(String(try indices(count: chars.count).map { chars[$0] }))
        case .undefined, .none:
            return .undefined
        default:
            throw TemplateError.runtime("'\(value.typeName)' object is not subscriptable", line: 0)
        }
    }

    private func typeError(_ op: String, _ a: JinjaValue, _ b: JinjaValue) -> TemplateError {
        if a.isUndefined || b.isUndefined {
            return .runtime("undefined value used with '\(op)'", line: 0)
        }
        return .runtime("unsupported operand types for \(op): '\(a.typeName)' and '\(b.typeName)'", line: 0)
    }

    private func binary(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws -> JinjaValue {
        if op == "~" {
            let (x, y) = (a.stringValue, b.stringValue)
            try checkLength(x.utf8.count + y.utf8.count)
            return .string(x + y)
        }
        switch (op, a, b) {
        case ("+", .string(let x), .string(let y)):
            try checkLength(x.utf8.count + y.utf8.count)
            return .string(x + y)
        case ("+", .array(let x), .array(let y)):
            try checkItems(x.count + y.count)
            return .array(x + y)
        case ("*", .string(let s), _) where b.intLike != nil:
            return .string(try repeated(s, b.intLike!))
        case ("*", _, .string(let s)) where a.intLike != nil:
            return .string(try repeated(s, a.intLike!))
        case ("*", .array(let x), _) where b.intLike != nil:
            let n = max(0, b.intLike!)
            let (total, overflow) = x.count.multipliedReportingOverflow(by: n)
            try checkItems(overflow ? Int.max : total)
            return .array(Array(repeating: x, count: n).flatMap { $0 })
        case ("%", .string, _):
            throw TemplateError.unsupported("string formatting with '%'", line: 0)
        default: break
        }
        if let x = a.intLike, let y = b.intLike {
            switch op {
            case "+": let (r, o) = x.addingReportingOverflow(y); return o ? .double(Double(x) + Double(y)) : .int(r)
            case "-": let (r, o) = x.subtractingReportingOverflow(y); return o ? .double(Double(x) - Double(y)) : .int(r)
            case "*": let (r, o) = x.multipliedReportingOverflow(by: y); return o ? .double(Double(x) * Double(y)) : .int(r)
            case "/":
                guard y != 0 else { throw TemplateError.runtime("division by zero", line: 0) }
                return .double(Double(x) / Double(y))
            case "//":
                guard y != 0 else { throw TemplateError.runtime("integer division or modulo by zero", line: 0) }
                let q = x / y
                return .int((x % y != 0 && (x < 0) != (y < 0)) ? q - 1 : q)
            case "%":
                guard y != 0 else { throw TemplateError.runtime("integer division or modulo by zero", line: 0) }
                let r = x % y
                return .int(r != 0 && (r < 0) != (y < 0) ? r + y : r)
            case "**":
                if y >= 0 {
                    var result = 1
                    for _ in 0..<y {
                        let (r, o) = result.multipliedReportingOverflow(by: x)
                        if o { return .double(pow(Double(x), Double(y))) }
                        result = r
                    }
                    return .int(result)
                }
                return .double(pow(Double(x), Double(y)))
            default: break
            }
        }
        if let x = a.number, let y = b.number {
            switch op {
            case "+": return .double(x + y)
            case "-": return .double(x - y)
            case "*": return .double(x * y)
            case "/":
                guard y != 0 else { throw TemplateError.runtime("division by zero", line: 0) }
                return .double(x / y)
            case "//":
                guard y != 0 else { throw TemplateError.runtime("division by zero", line: 0) }
                return .double((x / y).rounded(.down))
            case "%":
                guard y != 0 else { throw TemplateError.runtime("modulo by zero", line: 0) }
                let r = fmod(x, y)
                return .double(r != 0 && (r < 0) != (y < 0) ? r + y : r)
            case "**": return .double(pow(x, y))
            default: break
            }
        }
        throw typeError(op, a, b)
    }

    func compare(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws -> Bool {
        switch op {
        case "==": return a.looselyEquals(b)
        case "!=": return !a.looselyEquals(b)
        case "in": return try contains(b, a)
        case "not in": return !(try contains(b, a))
        default: break
        }
        let ordering: Int
        if let x = a.number, let y = b.number {
            ordering = x < y ? -1 : (x > y ? 1 : 0)
        } else if case .string(let x) = a, case .string(let y) = b {
            ordering = x.unicodeScalars.lexicographicallyPrecedes(y.unicodeScalars) ? -1 : (x == y ? 0 : 1)
        } else {
            throw TemplateError.runtime("'\(op)' not supported between '\(a.typeName)' and '\(b.typeName)'", line: 0)
        }
        switch op {
        case "<": return ordering < 0
        case ">": return ordering > 0
        case "<=": return ordering <= 0
        default: return ordering >= 0
        }
    }

    func contains(_ container: JinjaValue, _ element: JinjaValue) throws -> Bool {
        switch container {
        case .string(let s):
            guard case .string(let e) = element else {
                throw TemplateError.runtime("'in <string>' requires string as left operand, not \(element.typeName)", line: 0)
            }
            return e.isEmpty || s.contains(e)
        case .array(let a): return a.contains { $0.looselyEquals(element) }
        case .object(let o): return o[element.stringValue] != nil
        case .undefined: return false
        default: throw TemplateError.runtime("argument of type '\(container.typeName)' is not iterable", line: 0)
        }
    }

    /// `s * n`, within the length limit.
    private func repeated(_ s: String, _ n: Int) throws -> String {
        let n = max(0, n)
        let (total, overflow) = s.utf8.count.multipliedReportingOverflow(by: n)
        try checkLength(overflow ? Int.max : total)
        return String(repeating: s, count: n)
    }

    // MARK: Calls

    func call(_ function: JinjaFunction, _ positional: [JinjaValue], _ keywords: [String: JinjaValue]) throws -> JinjaValue {
        switch function.kind {
        case .builtin:
            return try callBuiltin(function.name, positional, keywords)
        case .macro(let macro):
            var frame: [String: JinjaValue] = [:]
            guard positional.count <= macro.parameters.count else {
                throw TemplateError.runtime("macro '\(macro.name)' takes \(macro.parameters.count) arguments", line: 0)
            }
            // Macros see globals and top-level variables, plus their own arguments.
            var saved = frames
            frames = [frames[0], frames[1], frame]
            defer {
                // Keep top-level changes (e.g. namespace updates) made by the macro.
                saved[0] = frames[0]
                saved[1] = frames[1]
                frames = saved
            }
            for (i, parameter) in macro.parameters.enumerated() {
                if i < positional.count {
                    frame[parameter.name] = positional[i]
                } else if let value = keywords[parameter.name] {
                    frame[parameter.name] = value
                } else if let defaultValue = parameter.defaultValue {
                    frame[parameter.name] = try eval(defaultValue)
                } else {
                    frame[parameter.name] = .undefined
                }
                frames[2] = frame
            }
            var out = ""
            _ = try render(macro.body, into: &out)
            return .string(out)
        }
    }

    private func callBuiltin(_ name: String, _ args: [JinjaValue], _ kwargs: [String: JinjaValue]) throws -> JinjaValue {
        switch name {
        case "range":
            let ints = args.compactMap(\.intLike)
            guard ints.count == args.count, (1...3).contains(ints.count) else {
                throw TemplateError.runtime("range() expects 1 to 3 integer arguments", line: 0)
            }
            let (start, stop, step) = ints.count == 1 ? (0, ints[0], 1) : (ints[0], ints[1], ints.count == 3 ? ints[2] : 1)
            guard step != 0 else { throw TemplateError.runtime("range() step must not be zero", line: 0) }
            let count = max(0, ((Double(stop) - Double(start)) / Double(step)).rounded(.up))
            try checkItems(count > Double(Self.maxItems) ? Int.max : Int(count))
            try spend(Int(count))
            return .array(stride(from: start, to: stop, by: step).map { .int($0) })
        case "namespace", "dict":
            var object = JinjaObject()
            if case .object(let initial)? = args.first { object = initial }
            for key in kwargs.keys.sorted() { object[key] = kwargs[key] }
            return .object(object)
        case "raise_exception":
            throw TemplateError.raised(args.first?.stringValue ?? "")
        case "strftime_now":
            guard case .string(let format)? = args.first else {
                throw TemplateError.runtime("strftime_now() expects a format string", line: 0)
            }
            return .string(Strftime.format(now, format))
        default:
            throw TemplateError.unsupported("function '\(name)'", line: 0)
        }
    }
}

/// The subset of C `strftime` that chat templates use, in English and the local time zone.
enum Strftime {
    private static let months = ["January", "February", "March", "April", "May", "June", "July", "August",
                                 "September", "October", "November", "December"]
    private static let weekdays = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]

    static func format(_ date: Date, _ format: String, timeZone: TimeZone = .current) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday, .nanosecond], from: date)
        let dayOfYear = calendar.ordinality(of: .day, in: .year, for: date) ?? 1
        func pad(_ v: Int, _ width: Int = 2) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        var out = ""
        var chars = format.makeIterator()
        while let ch = chars.next() {
            guard ch == "%" else { out.append(ch); continue }
            guard var spec = chars.next() else { out.append("%"); break }
            var noPad = false
            if spec == "-", let next = chars.next() { noPad = true; spec = next }
            let p: (Int) -> String = { noPad ? String($0) : pad($0) }
            switch spec {
            case "d": out += p(c.day!)
            case "e": out += noPad ? String(c.day!) : (c.day! < 10 ? " " : "") + String(c.day!)
            case "m": out += p(c.month!)
            case "Y": out += String(c.year!)
            case "y": out += pad(c.year! % 100)
            case "b", "h": out += String(months[c.month! - 1].prefix(3))
            case "B": out += months[c.month! - 1]
            case "a": out += String(weekdays[c.weekday! - 1].prefix(3))
            case "A": out += weekdays[c.weekday! - 1]
            case "H": out += p(c.hour!)
            case "I": out += p(c.hour! % 12 == 0 ? 12 : c.hour! % 12)
            case "p": out += c.hour! < 12 ? "AM" : "PM"
            case "M": out += p(c.minute!)
            case "S": out += p(c.second!)
            case "j": out += noPad ? String(dayOfYear) : pad(dayOfYear, 3)
            case "%": out += "%"
            default: out += "%" + String(spec)
            }
        }
        return out
    }
}
