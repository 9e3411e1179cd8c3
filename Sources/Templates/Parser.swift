/// Recursive-descent parser producing the node tree. Operator precedence follows jinja2's parser:
/// filters and tests bind tighter than arithmetic (`a + b | trim` is `a + (b | trim)`).
struct Parser {
    private var tokens: [Token]
    private var index = 0
    /// Nesting of blocks and expressions; each operator of a chain (`a ~ b ~ c`, `x|f|g`) nests the
    /// tree one level more. Bounded so that parsing, evaluating and freeing the tree cannot exhaust
    /// the stack on a hostile template.
    static let maxNesting = 100
    private var nesting = 0

    init(tokens: [Token]) { self.tokens = tokens }

    static func parse(_ source: String) throws -> [Node] {
        var parser = Parser(tokens: try Lexer.tokenize(source))
        let (nodes, end) = try parser.parseBody(until: [])
        if let end { throw TemplateError.syntax("unexpected '\(end)'", line: parser.line) }
        return nodes
    }

    // MARK: Token helpers

    private var current: Token { tokens[index] }
    private var line: Int { current.line }

    private mutating func nest() throws {
        nesting += 1
        guard nesting <= Self.maxNesting else {
            throw TemplateError.syntax("the template nests too deeply (over \(Self.maxNesting) levels)", line: line)
        }
    }

    private mutating func advance() -> Token {
        let token = tokens[index]
        if index < tokens.count - 1 { index += 1 }
        return token
    }

    private func isOp(_ op: String) -> Bool { current.kind == .op(op) }
    private func isName(_ name: String) -> Bool { current.kind == .name(name) }

    private func peekIsName(_ name: String, offset: Int = 1) -> Bool {
        index + offset < tokens.count && tokens[index + offset].kind == .name(name)
    }

    private mutating func skipOp(_ op: String) -> Bool {
        if isOp(op) { _ = advance(); return true }
        return false
    }

    private mutating func skipName(_ name: String) -> Bool {
        if isName(name) { _ = advance(); return true }
        return false
    }

    private mutating func expectOp(_ op: String) throws {
        guard skipOp(op) else { throw TemplateError.syntax("expected '\(op)', got \(describe(current.kind))", line: line) }
    }

    private mutating func expectName() throws -> String {
        guard case .name(let name) = current.kind else {
            throw TemplateError.syntax("expected a name, got \(describe(current.kind))", line: line)
        }
        _ = advance()
        return name
    }

    private mutating func expectBlockEnd() throws {
        guard current.kind == .blockEnd else {
            throw TemplateError.syntax("expected end of tag '%}', got \(describe(current.kind))", line: line)
        }
        _ = advance()
    }

    private func describe(_ kind: TokenKind) -> String {
        switch kind {
        case .text: "text"
        case .variableBegin: "'{{'"
        case .variableEnd: "'}}'"
        case .blockBegin: "'{%'"
        case .blockEnd: "'%}'"
        case .name(let n): "'\(n)'"
        case .string(let s): "string '\(s)'"
        case .int(let i): "'\(i)'"
        case .float(let d): "'\(d)'"
        case .op(let o): "'\(o)'"
        case .eof: "end of template"
        }
    }

    // MARK: Statements

    /// Parses nodes until a block tag whose name is in `endTags`; returns that tag name (already consumed,
    /// the rest of its tag is left to the caller), or nil at end of input.
    private mutating func parseBody(until endTags: Set<String>) throws -> ([Node], String?) {
        var nodes: [Node] = []
        while true {
            let token = current
            switch token.kind {
            case .eof:
                if !endTags.isEmpty {
                    throw TemplateError.syntax("unexpected end of template, expected one of \(endTags.sorted())", line: token.line)
                }
                return (nodes, nil)
            case .text(let text):
                _ = advance()
                nodes.append(.text(text))
            case .variableBegin:
                _ = advance()
                let expr = try parseTuple()
                guard current.kind == .variableEnd else {
                    throw TemplateError.syntax("expected '}}', got \(describe(current.kind))", line: line)
                }
                _ = advance()
                nodes.append(.output(expr, line: token.line))
            case .blockBegin:
                _ = advance()
                guard case .name(let tag) = current.kind else {
                    throw TemplateError.syntax("expected a tag name", line: line)
                }
                if endTags.contains(tag) {
                    _ = advance()
                    return (nodes, tag)
                }
                nodes.append(try parseStatement())
            default:
                throw TemplateError.syntax("unexpected \(describe(token.kind))", line: token.line)
            }
        }
    }

    private mutating func parseStatement() throws -> Node {
        let mark = nesting
        defer { nesting = mark }
        try nest()
        let tagLine = line
        let tag = try expectName()
        switch tag {
        case "if": return try parseIf(line: tagLine)
        case "for": return try parseFor(line: tagLine)
        case "set": return try parseSet(line: tagLine)
        case "macro": return try parseMacro()
        case "generation":
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endgeneration"])
            try expectBlockEnd()
            return .group(body)
        case "filter":
            let filters = try parseFilterChain()
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endfilter"])
            try expectBlockEnd()
            return .filterBlock(body: body, filters: filters, line: tagLine)
        case "with":
            var assignments: [(String, Expr)] = []
            while current.kind != .blockEnd {
                if !assignments.isEmpty { try expectOp(",") }
                let name = try expectName()
                try expectOp("=")
                assignments.append((name, try parseExpression()))
            }
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endwith"])
            try expectBlockEnd()
            return .with(assignments: assignments, body: body)
        case "break":
            try expectBlockEnd()
            return .breakLoop(line: tagLine)
        case "continue":
            try expectBlockEnd()
            return .continueLoop(line: tagLine)
        case "elif", "else", "endif", "endfor", "endset", "endmacro", "endgeneration", "endfilter", "endwith":
            throw TemplateError.syntax("unexpected '\(tag)'", line: tagLine)
        default:
            throw TemplateError.unsupported("tag '\(tag)'", line: tagLine)
        }
    }

    private mutating func parseIf(line tagLine: Int) throws -> Node {
        var branches: [(test: Expr, body: [Node])] = []
        var test = try parseTuple()
        while true {
            try expectBlockEnd()
            let (body, end) = try parseBody(until: ["elif", "else", "endif"])
            branches.append((test, body))
            switch end {
            case "elif":
                test = try parseTuple()
            case "else":
                try expectBlockEnd()
                let (otherwise, _) = try parseBody(until: ["endif"])
                try expectBlockEnd()
                return .ifBlock(branches: branches, otherwise: otherwise, line: tagLine)
            default:
                try expectBlockEnd()
                return .ifBlock(branches: branches, otherwise: [], line: tagLine)
            }
        }
    }

    private mutating func parseFor(line tagLine: Int) throws -> Node {
        let target = try parseTarget(allowAttribute: false)
        guard skipName("in") else { throw TemplateError.syntax("expected 'in' in for loop", line: line) }
        let iterable = try parseTuple(withCondition: false)
        var condition: Expr?
        if skipName("if") { condition = try parseExpression() }
        if isName("recursive") { throw TemplateError.unsupported("recursive for loop", line: tagLine) }
        try expectBlockEnd()
        let (body, end) = try parseBody(until: ["else", "endfor"])
        var otherwise: [Node] = []
        if end == "else" {
            try expectBlockEnd()
            (otherwise, _) = try parseBody(until: ["endfor"])
        }
        try expectBlockEnd()
        return .forBlock(ForLoop(target: target, iterable: iterable, condition: condition, body: body,
                                 otherwise: otherwise, line: tagLine))
    }

    private mutating func parseTarget(allowAttribute: Bool) throws -> Target {
        let first = try expectName()
        if allowAttribute, skipOp(".") {
            return .attribute(first, try expectName())
        }
        guard isOp(",") else { return .name(first) }
        var names = [first]
        while skipOp(",") {
            guard case .name = current.kind else { break }
            names.append(try expectName())
        }
        return .tuple(names)
    }

    private mutating func parseSet(line tagLine: Int) throws -> Node {
        let target = try parseTarget(allowAttribute: true)
        if skipOp("=") {
            let value = try parseTuple()
            try expectBlockEnd()
            return .set(target, value, line: tagLine)
        }
        guard case .name(let name) = target else {
            throw TemplateError.syntax("block set needs a single name", line: tagLine)
        }
        let filters = try parseFilterChain()
        try expectBlockEnd()
        let (body, _) = try parseBody(until: ["endset"])
        try expectBlockEnd()
        return .setBlock(name, body: body, filters: filters, line: tagLine)
    }

    /// `| name(args) | name ...` as used by `{% filter %}` and block `{% set %}`; the leading pipe is optional for
    /// `{% filter %}`.
    private mutating func parseFilterChain() throws -> [(name: String, args: [Argument])] {
        var filters: [(name: String, args: [Argument])] = []
        while current.kind != .blockEnd {
            if !filters.isEmpty || isOp("|") { try expectOp("|") }
            let name = try parseDottedName()
            let args = isOp("(") ? try parseCallArguments() : []
            filters.append((name, args))
        }
        return filters
    }

    private mutating func parseMacro() throws -> Node {
        let name = try expectName()
        try expectOp("(")
        var parameters: [(name: String, defaultValue: Expr?)] = []
        while !skipOp(")") {
            if !parameters.isEmpty { try expectOp(",") }
            if skipOp(")") { break }
            let param = try expectName()
            let defaultValue: Expr? = skipOp("=") ? try parseExpression() : nil
            parameters.append((param, defaultValue))
        }
        try expectBlockEnd()
        let (body, _) = try parseBody(until: ["endmacro"])
        if case .name = current.kind { _ = advance() }  // optional name after endmacro
        try expectBlockEnd()
        return .macro(Macro(name: name, parameters: parameters, body: body))
    }

    // MARK: Expressions

    /// An expression, or a tuple when commas follow (`{{ a, b }}`, `{% set x = 1, 2 %}`).
    private mutating func parseTuple(withCondition: Bool = true) throws -> Expr {
        let first = withCondition ? try parseExpression() : try parseOr()
        guard isOp(",") else { return first }
        var items = [first]
        while skipOp(",") {
            if current.kind == .blockEnd || current.kind == .variableEnd || isName("if") { break }
            items.append(withCondition ? try parseExpression() : try parseOr())
        }
        return .list(items)
    }

    mutating func parseExpression() throws -> Expr {
        let value = try parseOr()
        guard skipName("if") else { return value }
        let test = try parseOr()
        let otherwise: Expr? = skipName("else") ? try parseExpression() : nil
        return .conditional(test: test, then: value, else: otherwise)
    }

    private mutating func parseOr() throws -> Expr {
        let mark = nesting
        defer { nesting = mark }
        var left = try parseAnd()
        while skipName("or") { try nest(); left = .or(left, try parseAnd()) }
        return left
    }

    private mutating func parseAnd() throws -> Expr {
        let mark = nesting
        defer { nesting = mark }
        var left = try parseNot()
        while skipName("and") { try nest(); left = .and(left, try parseNot()) }
        return left
    }

    private mutating func parseNot() throws -> Expr {
        let mark = nesting
        defer { nesting = mark }
        if skipName("not") {
            try nest()
            return .not(try parseNot())
        }
        return try parseCompare()
    }

    private mutating func parseCompare() throws -> Expr {
        let left = try parseMath1()
        var ops: [(op: String, rhs: Expr)] = []
        while true {
            if case .op(let op) = current.kind, ["==", "!=", "<", ">", "<=", ">="].contains(op) {
                _ = advance()
                ops.append((op, try parseMath1()))
            } else if skipName("in") {
                ops.append(("in", try parseMath1()))
            } else if isName("not"), peekIsName("in") {
                _ = advance(); _ = advance()
                ops.append(("not in", try parseMath1()))
            } else {
                break
            }
        }
        return ops.isEmpty ? left : .compare(left, ops)
    }

    private mutating func parseMath1() throws -> Expr {
        let mark = nesting
        defer { nesting = mark }
        var left = try parseConcat()
        while case .op(let op) = current.kind, op == "+" || op == "-" {
            _ = advance()
            try nest()
            left = .binary(op, left, try parseConcat())
        }
        return left
    }

    private mutating func parseConcat() throws -> Expr {
        let mark = nesting
        defer { nesting = mark }
        var left = try parseMath2()
        while skipOp("~") { try nest(); left = .binary("~", left, try parseMath2()) }
        return left
    }

    private mutating func parseMath2() throws -> Expr {
        let mark = nesting
        defer { nesting = mark }
        var left = try parsePow()
        while case .op(let op) = current.kind, ["*", "/", "//", "%"].contains(op) {
            _ = advance()
            try nest()
            left = .binary(op, left, try parsePow())
        }
        return left
    }

    private mutating func parsePow() throws -> Expr {
        let mark = nesting
        defer { nesting = mark }
        var left = try parseUnary()
        while skipOp("**") { try nest(); left = .binary("**", left, try parseUnary()) }
        return left
    }

    private mutating func parseUnary(withFilter: Bool = true) throws -> Expr {
        let mark = nesting
        defer { nesting = mark }
        try nest()
        var node: Expr
        if skipOp("-") {
            node = .unary("-", try parseUnary(withFilter: false))
        } else if skipOp("+") {
            node = .unary("+", try parseUnary(withFilter: false))
        } else {
            node = try parsePrimary()
        }
        node = try parsePostfix(node)
        if withFilter { node = try parseFilterExpression(node) }
        return node
    }

    private mutating func parsePrimary() throws -> Expr {
        let token = advance()
        switch token.kind {
        case .name(let name):
            switch name {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(name)
            }
        case .string(var s):
            // Adjacent string literals concatenate.
            while case .string(let more) = current.kind { s += more; _ = advance() }
            return .literal(.string(s))
        case .int(let i): return .literal(.int(i))
        case .float(let d): return .literal(.double(d))
        case .op("("):
            if skipOp(")") { return .list([]) }
            let expr = try parseTuple()
            try expectOp(")")
            return expr
        case .op("["):
            var items: [Expr] = []
            while !skipOp("]") {
                if !items.isEmpty { try expectOp(",") }
                if skipOp("]") { break }
                items.append(try parseExpression())
            }
            return .list(items)
        case .op("{"):
            var pairs: [(key: Expr, value: Expr)] = []
            while !skipOp("}") {
                if !pairs.isEmpty { try expectOp(",") }
                if skipOp("}") { break }
                let key = try parseExpression()
                try expectOp(":")
                pairs.append((key, try parseExpression()))
            }
            return .dict(pairs)
        default:
            throw TemplateError.syntax("unexpected \(describe(token.kind))", line: token.line)
        }
    }

    private mutating func parsePostfix(_ base: Expr) throws -> Expr {
        let mark = nesting
        defer { nesting = mark }
        var node = base
        while true {
            try nest()
            if skipOp(".") {
                switch advance().kind {
                case .name(let name): node = .attribute(node, name)
                case .int(let i): node = .item(node, .literal(.int(i)))
                default: throw TemplateError.syntax("expected attribute name after '.'", line: line)
                }
            } else if skipOp("[") {
                node = try parseSubscript(node)
            } else if isOp("(") {
                node = .call(node, try parseCallArguments())
            } else {
                return node
            }
        }
    }

    private mutating func parseSubscript(_ base: Expr) throws -> Expr {
        var parts: [Expr?] = []
        var sawColon = false
        var currentPart: Expr? = nil
        while !isOp("]") {
            if skipOp(":") {
                parts.append(currentPart)
                currentPart = nil
                sawColon = true
            } else {
                currentPart = try parseExpression()
            }
        }
        try expectOp("]")
        parts.append(currentPart)
        if !sawColon {
            guard let key = parts[0] else { throw TemplateError.syntax("empty subscript", line: line) }
            return .item(base, key)
        }
        guard parts.count <= 3 else { throw TemplateError.syntax("invalid slice", line: line) }
        return .slice(base, start: parts[0], stop: parts.count > 1 ? parts[1] : nil, step: parts.count > 2 ? parts[2] : nil)
    }

    private mutating func parseCallArguments() throws -> [Argument] {
        try expectOp("(")
        var args: [Argument] = []
        while !skipOp(")") {
            if !args.isEmpty { try expectOp(",") }
            if skipOp(")") { break }
            if isOp("*") || isOp("**") { throw TemplateError.unsupported("argument unpacking with '*'", line: line) }
            if case .name(let name) = current.kind, index + 1 < tokens.count, tokens[index + 1].kind == .op("=") {
                _ = advance(); _ = advance()
                args.append(Argument(name: name, value: try parseExpression()))
            } else {
                args.append(Argument(name: nil, value: try parseExpression()))
            }
        }
        return args
    }

    private mutating func parseDottedName() throws -> String {
        var name = try expectName()
        while skipOp(".") { name += "." + (try expectName()) }
        return name
    }

    private mutating func parseFilterExpression(_ base: Expr) throws -> Expr {
        let mark = nesting
        defer { nesting = mark }
        var node = base
        while true {
            try nest()
            if skipOp("|") {
                let name = try parseDottedName()
                let args = isOp("(") ? try parseCallArguments() : []
                node = .filter(node, name: name, args)
            } else if skipName("is") {
                let negated = skipName("not")
                let name = try parseDottedName()
                var args: [Argument] = []
                if isOp("(") {
                    args = try parseCallArguments()
                } else if startsTestArgument() {
                    args = [Argument(name: nil, value: try parsePostfix(try parsePrimary()))]
                }
                node = .test(node, name: name, args, negated: negated)
            } else if isOp("(") {
                node = .call(node, try parseCallArguments())
            } else {
                return node
            }
        }
    }

    /// jinja2 allows one argument without parentheses: `x is divisibleby 3`, `x is equalto 'a'`.
    private func startsTestArgument() -> Bool {
        switch current.kind {
        case .string, .int, .float: return true
        case .op(let op): return op == "[" || op == "{"
        case .name(let n): return !["else", "or", "and", "if", "in", "not", "is"].contains(n)
        default: return false
        }
    }
}
