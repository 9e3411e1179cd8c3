/// Errors from parsing or rendering a template. Lines are 1-based; 0 means unknown.
public enum TemplateError: Error, Equatable, CustomStringConvertible {
    case syntax(String, line: Int)
    /// A construct this interpreter does not implement, e.g. `"filter 'xyz'"`.
    case unsupported(String, line: Int)
    /// The template called `raise_exception(message)`.
    case raised(String)
    case runtime(String, line: Int)

    public var description: String {
        switch self {
        case .syntax(let m, let line): "template syntax error at line \(line): \(m)"
        case .unsupported(let m, let line): "unsupported template construct at line \(line): \(m)"
        case .raised(let m): "template raised an exception: \(m)"
        case .runtime(let m, let line): "template error at line \(line): \(m)"
        }
    }

    /// Fills in the line of an error thrown without one.
    func at(line: Int) -> TemplateError {
        switch self {
        case .syntax(let m, 0): .syntax(m, line: line)
        case .unsupported(let m, 0): .unsupported(m, line: line)
        case .runtime(let m, 0): .runtime(m, line: line)
        default: self
        }
    }
}

struct Argument: Sendable {
    var name: String?
    var value: Expr
}

indirect enum Expr: Sendable {
    case literal(JinjaValue)
    case name(String)
    case list([Expr])
    case dict([(key: Expr, value: Expr)])
    case attribute(Expr, String)
    case item(Expr, Expr)
    case slice(Expr, start: Expr?, stop: Expr?, step: Expr?)
    case call(Expr, [Argument])
    case filter(Expr, name: String, [Argument])
    case test(Expr, name: String, [Argument], negated: Bool)
    case unary(String, Expr)
    case binary(String, Expr, Expr)
    case and(Expr, Expr)
    case or(Expr, Expr)
    case not(Expr)
    case compare(Expr, [(op: String, rhs: Expr)])
    case conditional(test: Expr, then: Expr, else: Expr?)
}

/// Left-hand side of `set` and `for`.
enum Target: Sendable {
    case name(String)
    case tuple([String])
    case attribute(String, String)
}

struct Macro: Sendable {
    var name: String
    var parameters: [(name: String, defaultValue: Expr?)]
    var body: [Node]
}

indirect enum Node: Sendable {
    case text(String)
    case output(Expr, line: Int)
    case ifBlock(branches: [(test: Expr, body: [Node])], otherwise: [Node], line: Int)
    case forBlock(ForLoop)
    case set(Target, Expr, line: Int)
    case setBlock(String, body: [Node], filters: [(name: String, args: [Argument])], line: Int)
    case macro(Macro)
    case filterBlock(body: [Node], filters: [(name: String, args: [Argument])], line: Int)
    case with(assignments: [(String, Expr)], body: [Node])
    /// Bodies rendered as-is, e.g. `{% generation %}`.
    case group([Node])
    case breakLoop(line: Int)
    case continueLoop(line: Int)
}

struct ForLoop: Sendable {
    var target: Target
    var iterable: Expr
    var condition: Expr?
    var body: [Node]
    var otherwise: [Node]
    var line: Int
}
