import Engine
import Foundation
import Grammar
import Templates

/// How a chat request's reply is shaped: the grammar it is generated under, whether it may be a tool
/// call, and how the tools are shown to the model.
struct ReplyShape {
    var constraint: OutputConstraint?
    /// Tools offered (empty with `tool_choice: none`).
    var tools: [ToolDefinition] = []
    var choice: ToolChoice = .none
    var parallel = true
    /// The reply is a tool call whenever it starts with `{` or `[` (free text is the other branch).
    var jsonMeansToolCall = false

    var callsTools: Bool { !tools.isEmpty }

    /// The reply may be an array of calls: parallel calls allowed, and no single function forced.
    var offersSeveralCalls: Bool {
        if case .function = choice { return false }
        return parallel && callsTools
    }
}

extension OpenAIServer {
    /// The constraint of `response_format` (nil for text), or a 400 naming the schema keyword at fault.
    static func constraint(for format: ResponseFormat?, clientGone: @escaping @Sendable () -> Bool = { false }) throws
        -> OutputConstraint?
    {
        guard let format else { return nil }
        switch format.type {
        case "text": return nil
        case "json_object": return .jsonObject
        case "json_schema":
            guard let spec = format.jsonSchema else {
                throw APIError.invalidRequest("Missing required parameter: 'response_format.json_schema'.",
                                              param: "response_format.json_schema", code: "missing_required_parameter")
            }
            do {
                return try OutputConstraint(grammar: Grammar.jsonSchema(spec.schema ?? .bool(true), limits: limits(clientGone)))
            } catch {
                if clientGone() { throw APIError.clientDisconnected }
                throw schemaError(error, param: "response_format", what: "response_format")
            }
        default:
            throw APIError.invalidValue("response_format.type", "'\(format.type)' is not one of 'text', 'json_object', 'json_schema'.")
        }
    }

    /// Grammar limits that stop compiling once the client is gone.
    static func limits(_ clientGone: @escaping @Sendable () -> Bool) -> GrammarLimits {
        var limits = GrammarLimits()
        limits.shouldStop = clientGone
        return limits
    }

    static func schemaError(_ e: SchemaError, param: String, what: String) -> APIError {
        APIError.invalidRequest("Invalid schema for \(what) at \(e.path): \(e.message).", param: param, code: "invalid_schema")
    }

    /// OpenAI's rule for function names: 1 to 64 of a-z, A-Z, 0-9, underscores and dashes.
    static func isFunctionName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count)
            && name.utf8.allSatisfy { $0.isASCIIAlphanumeric || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }

    /// Checks `tools`, `tool_choice` and `parallel_tool_calls` and builds the reply's grammar.
    static func replyShape(_ body: ChatCompletionRequest, clientGone: @escaping @Sendable () -> Bool = { false }) throws
        -> ReplyShape
    {
        var shape = ReplyShape()
        let format = try constraint(for: body.responseFormat, clientGone: clientGone)
        shape.constraint = format
        let tools = body.tools ?? []
        if tools.isEmpty {
            if body.toolChoice != nil, body.toolChoice != ToolChoice.none {
                throw APIError.invalidRequest("'tool_choice' is only allowed when 'tools' are specified.",
                                              param: "tool_choice", code: "invalid_value")
            }
            return shape
        }
        var callSchemas: [String: JSONValue] = [:]
        // The tools share one budget of grammar states (they all go into the reply's grammar), so a
        // request's compilation work is bounded however many tools it has.
        var statesLeft = GrammarLimits().maxStates
        let limits = limits(clientGone)
        for (i, tool) in tools.enumerated() {
            guard tool.type == "function" else {
                throw APIError.invalidValue("tools[\(i)].type", "only 'function' tools are supported.")
            }
            let name = tool.function.name
            guard isFunctionName(name) else {
                throw APIError.invalidValue("tools[\(i)].function.name",
                                            "'\(name)' must be 1 to 64 letters, digits, underscores or dashes.")
            }
            guard callSchemas[name] == nil else {
                throw APIError.invalidValue("tools[\(i)].function.name", "the function '\(name)' is defined twice.")
            }
            let parameters = tool.function.parameters ?? .object([("type", .string("object")), ("properties", .object([]))])
            guard case .object = parameters else {
                throw APIError.invalidValue("tools[\(i)].function.parameters", "must be a JSON Schema object.")
            }
            do {
                var limits = limits
                limits.maxStates = statesLeft
                statesLeft -= try Grammar.jsonSchema(parameters, limits: limits).stateCount
            } catch {
                if clientGone() { throw APIError.clientDisconnected }
                throw schemaError(error, param: "tools[\(i)].function.parameters", what: "function '\(name)'")
            }
            callSchemas[name] = .object([
                ("type", .string("object")),
                ("properties", .object([("name", .object([("const", .string(name))])), ("arguments", parameters)])),
                ("required", .array([.string("name"), .string("arguments")])),
                ("additionalProperties", .bool(false)),
            ])
        }
        let choice = body.toolChoice ?? .auto
        if case .function(let name) = choice, callSchemas[name] == nil {
            throw APIError.invalidValue("tool_choice", "the function '\(name)' is not in 'tools'.")
        }
        if choice == .none { return shape }
        shape.tools = tools
        shape.choice = choice
        shape.parallel = body.parallelToolCalls ?? true

        let anyCall: JSONValue
        if case .function(let name) = choice {
            anyCall = callSchemas[name]!
        } else if tools.count == 1 {
            anyCall = callSchemas[tools[0].function.name]!
        } else {
            anyCall = .object([("anyOf", .array(tools.map { callSchemas[$0.function.name]! }))])
        }
        var calls = anyCall
        if shape.offersSeveralCalls {
            calls = .object([("anyOf", .array([
                anyCall, .object([("type", .string("array")), ("items", anyCall), ("minItems", .int(1))]),
            ]))])
        }
        do {
            switch (choice, format) {
            case (.auto, nil):
                shape.constraint = OutputConstraint(grammar: try Grammar.jsonSchemaOrText(calls, limits: limits))
                shape.jsonMeansToolCall = true
            case (.auto, _?):
                // A tool call or the reply the response format asks for, told apart by their shape.
                let reply: JSONValue = body.responseFormat?.type == "json_object"
                    ? .object([("type", .string("object"))])
                    : body.responseFormat?.jsonSchema?.schema ?? .bool(true)
                shape.constraint = .init(grammar: try Grammar.jsonSchema(.object([("anyOf", .array([calls, reply]))]), limits: limits))
            default:
                shape.constraint = .init(grammar: try Grammar.jsonSchema(calls, limits: limits))
                shape.jsonMeansToolCall = true
            }
        } catch {
            if clientGone() { throw APIError.clientDisconnected }
            throw schemaError(error, param: "tools", what: "tools")
        }
        return shape
    }

    // MARK: Prompts

    /// The system prompt section that describes the tools to a model whose template has no tool support.
    static func toolInstructions(_ shape: ReplyShape) -> String {
        var lines = ["# Tools", ""]
        switch shape.choice {
        case .required: lines.append("You must call one of these functions.")
        case .function(let name): lines.append("You must call the function \"\(name)\".")
        default: lines.append("You may call one or more of these functions to answer the user.")
        }
        lines.append("")
        lines.append("Functions (the arguments are described by JSON Schema):")
        for tool in shape.tools {
            var entry: [(key: String, value: JSONValue)] = [("name", .string(tool.function.name))]
            if let d = tool.function.description { entry.append(("description", .string(d))) }
            entry.append(("parameters", tool.function.parameters ?? .object([("type", .string("object")), ("properties", .object([]))])))
            lines.append(JSONValue.object(entry).spacedJSON())
        }
        lines.append("")
        lines.append(#"To call a function, reply with only a JSON object: {"name": "<function name>", "arguments": {<arguments>}}."#)
        if shape.offersSeveralCalls {
            lines.append("To call several functions at once, reply with a JSON array of such objects.")
        }
        if shape.choice == .auto { lines.append("If no function is needed, answer in plain text.") }
        return lines.joined(separator: "\n")
    }

    /// The prompt of a chat with tools or tool messages: messages as template values. With a template
    /// that supports tools they go to it as they are; otherwise the tools are described in the system
    /// message, earlier tool calls are written as the JSON the model would have produced, and tool
    /// results become user messages.
    static func chatPrompt(_ messages: [ChatMessageParam], texts: [String], shape: ReplyShape, engine: InferenceEngine) throws
        -> [Int]
    {
        let native = engine.chatTemplate?.supportsTools ?? false
        var names: [String: String] = [:]
        var values: [JinjaValue] = []
        for (m, text) in zip(messages, texts) {
            let role = m.role == "developer" ? "system" : m.role
            if let calls = m.toolCalls, !calls.isEmpty {
                for c in calls { names[c.id] = c.function.name }
                if native {
                    values.append(.object(JinjaObject([
                        ("role", .string("assistant")), ("content", .string(text)),
                        ("tool_calls", .array(calls.map { c in
                            .object(JinjaObject([
                                ("id", .string(c.id)), ("type", .string("function")),
                                ("function", .object(JinjaObject([
                                    ("name", .string(c.function.name)),
                                    ("arguments", (try? JSONValue.parse(c.function.arguments)).map(jinja) ?? .string(c.function.arguments)),
                                ]))),
                            ]))
                        })),
                    ])))
                } else {
                    let written = calls.map { c in
                        "{\"name\": \(JSONValue.quoted(c.function.name)), \"arguments\": \(c.function.arguments)}"
                    }
                    let json = written.count == 1 ? written[0] : "[" + written.joined(separator: ", ") + "]"
                    values.append(["role": "assistant", "content": .string(text.isEmpty ? json : text + "\n" + json)])
                }
            } else if role == "tool" {
                let name = m.name ?? m.toolCallID.flatMap { names[$0] }
                if native {
                    var o = JinjaObject([("role", "tool"), ("content", .string(text))])
                    if let id = m.toolCallID { o["tool_call_id"] = .string(id) }
                    if let name { o["name"] = .string(name) }
                    values.append(.object(o))
                } else {
                    values.append(["role": "user", "content": .string("Result of the function \(name.map { "\"\($0)\"" } ?? "call"): \(text)")])
                }
            } else {
                values.append(["role": .string(role), "content": .string(text)])
            }
        }
        var extra: [String: JinjaValue] = [:]
        if shape.callsTools {
            if native {
                extra["tools"] = .array(shape.tools.map { t in
                    var f = JinjaObject([("name", .string(t.function.name))])
                    if let d = t.function.description { f["description"] = .string(d) }
                    f["parameters"] = jinja(t.function.parameters ?? .object([("type", .string("object")), ("properties", .object([]))]))
                    return .object(JinjaObject([("type", "function"), ("function", .object(f))]))
                })
            } else {
                let section = toolInstructions(shape)
                if case .object(var first)? = values.first, first["role"] == "system" {
                    first["content"] = .string((first["content"]?.stringValue ?? "") + "\n\n" + section)
                    values[0] = .object(first)
                } else {
                    values.insert(["role": "system", "content": .string(section)], at: 0)
                }
            }
        }
        return try engine.chatTokens(values, extra: extra)
    }

    static func jinja(_ v: JSONValue) -> JinjaValue {
        switch v {
        case .null: .none
        case .bool(let b): .bool(b)
        case .int(let i): .int(i)
        case .double(let d): .double(d)
        case .string(let s): .string(s)
        case .array(let a): .array(a.map(jinja))
        case .object(let o): .object(JinjaObject(o.map { ($0.key, jinja($0.value)) }))
        }
    }

    // MARK: Replies

    /// The tool calls of a finished reply, if it is one; nil when it is text (or a JSON reply in
    /// the response format's shape).
    static func toolCalls(in text: String, shape: ReplyShape, finish: FinishReason) -> [ToolCall]? {
        guard shape.callsTools, finish == .stop else { return nil }
        let scan = ToolCallScanner.scan(text)
        guard scan.isToolCall, !scan.calls.isEmpty else { return nil }
        let known = Set(shape.tools.map(\.function.name))
        var calls: [ToolCall] = []
        for c in scan.calls {
            guard let name = c.name, known.contains(name), c.argumentsComplete else { return nil }
            calls.append(ToolCall(id: newID("call_"), name: name, arguments: c.arguments))
        }
        // A JSON reply in the response format's shape that merely looks like a call is still a reply.
        if !shape.jsonMeansToolCall, (try? JSONValue.parse(text)).map({ value in
            let objects = value.arrayValue ?? [value]
            return objects.allSatisfy { $0.objectValue.map { Set($0.map(\.key)) == ["name", "arguments"] } ?? false }
        }) != true { return nil }
        return calls
    }
}

/// Reads tool calls out of a reply as it is generated: `{"name": ..., "arguments": {...}}` or an array
/// of them. Tolerates an incomplete text: it reports what is there so far, so a stream can send the
/// function's name as soon as it is known and the arguments as they grow.
public struct ToolCallScanner: Sendable {
    public struct Call: Equatable, Sendable {
        public var name: String?
        /// The arguments' JSON text as written (so far).
        public var arguments = ""
        public var argumentsComplete = false

        public init(name: String? = nil, arguments: String = "", argumentsComplete: Bool = false) {
            self.name = name
            self.arguments = arguments
            self.argumentsComplete = argumentsComplete
        }
    }

    /// The text starts (after whitespace) with `{` or `[`.
    public var isToolCall = false
    public var calls: [Call] = []

    public static func scan(_ text: String) -> ToolCallScanner {
        var out = ToolCallScanner()
        let b = Array(text.utf8)
        var i = 0
        func skip() { while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 } }
        /// The end of the value starting at `i` (nil if incomplete).
        func valueEnd(_ start: Int) -> Int? {
            var j = start
            var depth = 0
            var inString = false
            while j < b.count {
                let c = b[j]
                if inString {
                    if c == UInt8(ascii: "\\") { j += 1 } else if c == UInt8(ascii: "\"") {
                        inString = false
                        if depth == 0 { return j + 1 }
                    }
                } else if c == UInt8(ascii: "\"") {
                    inString = true
                } else if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") {
                    depth += 1
                } else if c == UInt8(ascii: "}") || c == UInt8(ascii: "]") {
                    depth -= 1
                    if depth == 0 { return j + 1 }
                    if depth < 0 { return j }
                } else if depth == 0, c == UInt8(ascii: ",") || c == 0x20 || c == 0x0A {
                    return j
                }
                j += 1
            }
            return nil
        }
        skip()
        guard i < b.count, b[i] == UInt8(ascii: "{") || b[i] == UInt8(ascii: "[") else { return out }
        out.isToolCall = true
        let array = b[i] == UInt8(ascii: "[")
        if array { i += 1 }
        while true {
            skip()
            guard i < b.count, b[i] == UInt8(ascii: "{") else { return out }
            i += 1
            var call = Call()
            out.calls.append(call)
            members: while true {
                skip()
                guard i < b.count else { return out }
                if b[i] == UInt8(ascii: "}") {
                    i += 1
                    break members
                }
                if b[i] == UInt8(ascii: ",") {
                    i += 1
                    continue
                }
                guard let keyEnd = valueEnd(i) else { return out }
                let key = (try? JSONValue.parse(Array(b[i..<keyEnd])))?.stringValue
                i = keyEnd
                skip()
                guard i < b.count, b[i] == UInt8(ascii: ":") else { return out }
                i += 1
                skip()
                let start = i
                let end = valueEnd(start)
                let raw = String(decoding: b[start..<(end ?? b.count)], as: UTF8.self)
                if key == "name", end != nil {
                    call.name = (try? JSONValue.parse(raw))?.stringValue
                } else if key == "arguments" {
                    call.arguments = raw
                    call.argumentsComplete = end != nil
                }
                out.calls[out.calls.count - 1] = call
                guard let end else { return out }
                i = end
            }
            guard array else { return out }
            skip()
            guard i < b.count, b[i] == UInt8(ascii: ",") else { return out }
            i += 1
        }
    }
}

/// One streamed choice of a reply that may call tools: its first character says whether it is text
/// or a tool call, and its text becomes content deltas or tool-call deltas (the name as soon as it is
/// known, then the arguments as they grow). A reply that may be either a tool call or a JSON answer
/// is held until it ends.
struct StreamedReply {
    enum Mode { case undecided, content, toolCall, buffered }

    let shape: ReplyShape
    var mode: Mode
    var text = ""
    var sentContent = 0
    /// Bytes of each call's arguments already sent.
    var sentArguments: [Int] = []

    init(shape: ReplyShape) {
        self.shape = shape
        mode = shape.callsTools ? .undecided : .content
    }

    mutating func append(_ delta: String) -> [ChatDelta] {
        guard shape.callsTools else { return [ChatDelta(content: delta)] }
        text += delta
        if mode == .undecided {
            guard let first = text.utf8.first(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }) else { return [] }
            if first == UInt8(ascii: "{") || first == UInt8(ascii: "[") {
                mode = shape.jsonMeansToolCall ? .toolCall : .buffered
            } else {
                mode = .content
            }
        }
        switch mode {
        case .content: return contentDelta()
        case .toolCall: return callDeltas(ToolCallScanner.scan(text))
        case .undecided, .buffered: return []
        }
    }

    /// The last deltas, and whether the reply called tools.
    mutating func finish(_ result: GenerationResult) -> ([ChatDelta], Bool) {
        guard shape.callsTools else { return ([], false) }
        text = result.text
        switch mode {
        case .undecided, .content:
            return (contentDelta(), false)
        case .buffered:
            guard let calls = OpenAIServer.toolCalls(in: text, shape: shape, finish: result.finishReason) else {
                return (contentDelta(), false)
            }
            let deltas = calls.enumerated().map { k, c in
                ChatDelta(toolCalls: [ToolCallDelta(index: k, id: c.id, name: c.function.name, arguments: c.function.arguments)])
            }
            return (deltas, true)
        case .toolCall:
            let called = OpenAIServer.toolCalls(in: text, shape: shape, finish: result.finishReason) != nil
            return (callDeltas(ToolCallScanner.scan(text)), called)
        }
    }

    private mutating func contentDelta() -> [ChatDelta] {
        let bytes = Array(text.utf8)
        guard bytes.count > sentContent else { return [] }
        defer { sentContent = bytes.count }
        return [ChatDelta(content: String(decoding: bytes[sentContent...], as: UTF8.self))]
    }

    private mutating func callDeltas(_ scan: ToolCallScanner) -> [ChatDelta] {
        var out: [ToolCallDelta] = []
        for (k, call) in scan.calls.enumerated() {
            if k == sentArguments.count {
                guard let name = call.name else { break }
                sentArguments.append(0)
                out.append(ToolCallDelta(index: k, id: OpenAIServer.newID("call_"), name: name, arguments: ""))
            }
            let args = Array(call.arguments.utf8)
            if args.count > sentArguments[k] {
                out.append(ToolCallDelta(index: k, arguments: String(decoding: args[sentArguments[k]...], as: UTF8.self)))
                sentArguments[k] = args.count
            }
        }
        return out.map { ChatDelta(toolCalls: [$0]) }
    }
}

extension UInt8 {
    var isASCIIAlphanumeric: Bool {
        (0x30...0x39).contains(self) || (0x41...0x5A).contains(self) || (0x61...0x7A).contains(self)
    }
}
