import Engine
import Foundation
import Grammar
import HTTPTypes
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore

// MARK: - Request

/// POST /v1/responses: OpenAI's Responses API, run as a chat completion of one choice. `input` is a string
/// or items (messages, function calls and their outputs); `previous_response_id` continues a stored
/// conversation; `instructions` is a system message for this response only.
public struct ResponsesRequest: Decodable, Sendable {
    public var model: String
    public var input: ResponsesInput
    public var instructions: String?
    public var previousResponseID: String?
    public var tools: [ResponsesTool]?
    public var toolChoice: ResponsesToolChoice?
    public var text: ResponsesText?
    public var maxOutputTokens: Int?
    public var temperature: Double?
    public var topP: Double?
    public var store: Bool?
    public var stream: Bool?
    public var parallelToolCalls: Bool?
    public var metadata: [String: String]?
    public var user: String?
    /// Extension (as in chat completions): reproducible sampling.
    public var seed: Int?

    enum CodingKeys: String, CodingKey {
        case model, input, instructions, tools, text, temperature, store, stream, metadata, user, seed
        case previousResponseID = "previous_response_id"
        case toolChoice = "tool_choice"
        case maxOutputTokens = "max_output_tokens"
        case topP = "top_p"
        case parallelToolCalls = "parallel_tool_calls"
    }
}

public enum ResponsesInput: Decodable, Sendable {
    case text(String)
    case items([ResponsesItem])

    public init(from decoder: Decoder) throws {
        switch try StringOrArray<ResponsesItem>(from: decoder, expected: "a string or an array of input items") {
        case .string(let s): self = .text(s)
        case .array(let items): self = .items(items)
        }
    }
}

/// One input item: a message (`role` and `content`), a `function_call` the model made, or a
/// `function_call_output` answering one. Other fields of items sent back from earlier outputs (id, status)
/// are accepted and ignored.
public struct ResponsesItem: Decodable, Sendable {
    public var type: String?
    public var role: String?
    public var content: ResponsesContent?
    public var callID: String?
    public var name: String?
    public var arguments: String?
    public var output: ResponsesContent?

    enum CodingKeys: String, CodingKey {
        case type, role, content, name, arguments, output
        case callID = "call_id"
    }
}

/// A string, or content parts (`input_text`, `output_text`; others are refused by name).
public enum ResponsesContent: Decodable, Sendable {
    case text(String)
    case parts([Part])

    public struct Part: Decodable, Sendable {
        public var type: String
        public var text: String?
    }

    public init(from decoder: Decoder) throws {
        switch try StringOrArray<Part>(from: decoder, expected: "a string or an array of content parts") {
        case .string(let s): self = .text(s)
        case .array(let parts): self = .parts(parts)
        }
    }
}

/// `{"type": "function", "name", "description", "parameters", "strict"}` (flat, unlike chat's).
public struct ResponsesTool: Codable, Sendable {
    public var type: String
    public var name: String?
    public var description: String?
    public var parameters: JSONValue?
    public var strict: Bool?
}

/// "none", "auto", "required", or `{"type": "function", "name": ...}`.
public enum ResponsesToolChoice: Codable, Sendable {
    case mode(String)
    case function(String)

    struct Named: Codable {
        var type: String
        var name: String?
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) {
            self = .mode(s)
            return
        }
        let n = try c.decode(Named.self)
        guard n.type == "function", let name = n.name else {
            throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath,
                                                    debugDescription: "expected \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"name\": ...}"))
        }
        self = .function(name)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .mode(let s): try c.encode(s)
        case .function(let name): try c.encode(Named(type: "function", name: name))
        }
    }
}

/// `text.format`: `{"type": "text"}`, `{"type": "json_object"}` or `{"type": "json_schema", "name", "schema", "strict"}`.
public struct ResponsesText: Codable, Sendable {
    public struct Format: Codable, Sendable {
        public var type: String
        public var name: String?
        public var description: String?
        public var schema: JSONValue?
        public var strict: Bool?
    }

    public var format: Format?
}

// MARK: - Response

/// An output item: the assistant's message, or a call of one of the request's functions.
enum ResponsesOutputItem: Encodable, Sendable {
    case message(id: String, text: String, status: String)
    case functionCall(id: String, callID: String, name: String, arguments: String, status: String)

    enum Keys: String, CodingKey {
        case type, id, status, role, content, annotations, text, name, arguments
        case callID = "call_id"
    }

    struct OutputText: Encodable {
        var type = "output_text"
        var text: String
        var annotations: [String] = []
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        switch self {
        case .message(let id, let text, let status):
            try c.encode("message", forKey: .type)
            try c.encode(id, forKey: .id)
            try c.encode(status, forKey: .status)
            try c.encode("assistant", forKey: .role)
            try c.encode(status == "in_progress" && text.isEmpty ? [] : [OutputText(text: text)], forKey: .content)
        case .functionCall(let id, let callID, let name, let arguments, let status):
            try c.encode("function_call", forKey: .type)
            try c.encode(id, forKey: .id)
            try c.encode(callID, forKey: .callID)
            try c.encode(name, forKey: .name)
            try c.encode(arguments, forKey: .arguments)
            try c.encode(status, forKey: .status)
        }
    }
}

struct ResponsesUsage: Encodable, Sendable {
    struct InputDetails: Encodable, Sendable {
        var cachedTokens: Int
        enum CodingKeys: String, CodingKey { case cachedTokens = "cached_tokens" }
    }

    struct OutputDetails: Encodable, Sendable {
        var reasoningTokens = 0
        enum CodingKeys: String, CodingKey { case reasoningTokens = "reasoning_tokens" }
    }

    var inputTokens: Int
    var inputTokensDetails: InputDetails
    var outputTokens: Int
    var outputTokensDetails = OutputDetails()
    var totalTokens: Int

    enum CodingKeys: String, CodingKey {
        case inputTokens = "input_tokens", inputTokensDetails = "input_tokens_details", outputTokens = "output_tokens"
        case outputTokensDetails = "output_tokens_details", totalTokens = "total_tokens"
    }
}

/// The response object of POST/GET /v1/responses and of the stream's lifecycle events.
struct ResponseObject: Encodable, Sendable {
    struct Incomplete: Encodable, Sendable { var reason: String }
    struct Reasoning: Encodable, Sendable {
        var effort: String?
        var summary: String?
        func encode(to encoder: Encoder) throws {
            enum K: String, CodingKey { case effort, summary }
            var c = encoder.container(keyedBy: K.self)
            try c.encodeNil(forKey: .effort)
            try c.encodeNil(forKey: .summary)
        }
    }

    var id: String
    var object = "response"
    var createdAt: Int
    var status: String
    var model: String
    var output: [ResponsesOutputItem]
    var usage: ResponsesUsage?
    var instructions: String?
    var maxOutputTokens: Int?
    var temperature: Double
    var topP: Double
    var tools: [ResponsesTool]
    var toolChoice: ResponsesToolChoice
    var parallelToolCalls: Bool
    var previousResponseID: String?
    var store: Bool
    var text: ResponsesText
    var incompleteDetails: Incomplete?
    var metadata: [String: String]
    var user: String?

    enum CodingKeys: String, CodingKey {
        case id, object, status, model, output, usage, instructions, temperature, tools, store, text, metadata, user
        case createdAt = "created_at", maxOutputTokens = "max_output_tokens", topP = "top_p"
        case toolChoice = "tool_choice", parallelToolCalls = "parallel_tool_calls"
        case previousResponseID = "previous_response_id", incompleteDetails = "incomplete_details"
        case error, truncation, reasoning
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(object, forKey: .object)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(status, forKey: .status)
        try c.encode(model, forKey: .model)
        try c.encode(output, forKey: .output)
        try c.encode(usage, forKey: .usage)
        try c.encode(instructions, forKey: .instructions)
        try c.encode(maxOutputTokens, forKey: .maxOutputTokens)
        try c.encode(temperature, forKey: .temperature)
        try c.encode(topP, forKey: .topP)
        try c.encode(tools, forKey: .tools)
        try c.encode(toolChoice, forKey: .toolChoice)
        try c.encode(parallelToolCalls, forKey: .parallelToolCalls)
        try c.encode(previousResponseID, forKey: .previousResponseID)
        try c.encode(store, forKey: .store)
        try c.encode(text, forKey: .text)
        try c.encode(incompleteDetails, forKey: .incompleteDetails)
        try c.encode(metadata, forKey: .metadata)
        try c.encode(user, forKey: .user)
        try c.encodeNil(forKey: .error)
        try c.encode("disabled", forKey: .truncation)
        try c.encode(Reasoning(), forKey: .reasoning)
    }
}

// MARK: - Storage

/// Stored responses (`store`, the default): the object GET returns, and the whole conversation up to and
/// including its output, which `previous_response_id` continues. Each belongs to the credential that made
/// it; another gets 404. In memory: the newest `capacity`, and at most `maxBytes` of conversation text
/// (the oldest go first).
public final class ResponseStore: Sendable {
    struct Entry: Sendable {
        var owner: String
        var object: ResponseObject
        var conversation: [ChatMessageParam]

        /// Bytes of text it holds (messages, call arguments), roughly what it costs to keep.
        var bytes: Int {
            conversation.reduce(256) { total, m in
                var n = total + 64
                switch m.content {
                case .text(let t): n += t.utf8.count
                case .parts(let parts): n += parts.reduce(0) { $0 + ($1.text?.utf8.count ?? 0) }
                case nil: break
                }
                for c in m.toolCalls ?? [] { n += c.function.arguments.utf8.count + c.function.name.utf8.count + 64 }
                return n
            }
        }
    }

    private struct State {
        var entries: [String: (entry: Entry, bytes: Int)] = [:]
        var order: [String] = []
        var bytes = 0
    }

    private let state = NIOLockedValueBox(State())
    public let capacity: Int
    public let maxBytes: Int

    public init(capacity: Int = 4096, maxBytes: Int = 64 << 20) {
        self.capacity = capacity
        self.maxBytes = maxBytes
    }

    func save(_ id: String, _ entry: Entry) {
        let size = entry.bytes
        state.withLockedValue { s in
            if let old = s.entries[id] { s.bytes -= old.bytes } else { s.order.append(id) }
            s.entries[id] = (entry, size)
            s.bytes += size
            while s.order.count > capacity || (s.bytes > maxBytes && s.order.count > 1) {
                let oldest = s.order.removeFirst()
                if let gone = s.entries.removeValue(forKey: oldest) { s.bytes -= gone.bytes }
            }
        }
    }

    func get(_ id: String, owner: String) -> Entry? {
        state.withLockedValue { s in s.entries[id].flatMap { $0.entry.owner == owner ? $0.entry : nil } }
    }

    func delete(_ id: String, owner: String) -> Bool {
        state.withLockedValue { s in
            guard let e = s.entries[id], e.entry.owner == owner else { return false }
            s.entries[id] = nil
            s.bytes -= e.bytes
            s.order.removeAll { $0 == id }
            return true
        }
    }

    /// Responses kept, and the bytes of text they hold.
    public var usage: (count: Int, bytes: Int) { state.withLockedValue { ($0.order.count, $0.bytes) } }
}

// MARK: - Handler

extension OpenAIServer {
    public static func responseNotFound(_ id: String) -> APIError {
        APIError(status: .notFound, message: "No response with id '\(id)' found.", type: "invalid_request_error",
                 param: "response_id", code: "not_found")
    }

    /// The chat messages of a Responses request: the stored conversation it continues, `instructions`, then `input`.
    /// `owner` nil: the caller (a gateway) keeps the conversation and has put its history in `input`.
    func responsesMessages(_ body: ResponsesRequest, owner: String?) throws -> (history: [ChatMessageParam], new: [ChatMessageParam]) {
        var history: [ChatMessageParam] = []
        if let owner, let previous = body.previousResponseID {
            guard let entry = responses.get(previous, owner: owner) else { throw Self.responseNotFound(previous) }
            history = entry.conversation
        }
        var new: [ChatMessageParam] = []
        switch body.input {
        case .text(let s):
            new.append(ChatMessageParam(role: "user", content: .text(s)))
        case .items(let items):
            guard !items.isEmpty || !history.isEmpty else { throw APIError.invalidValue("input", "must not be empty.") }
            guard items.count <= Self.maxMessages else {
                throw APIError.invalidValue("input", "at most \(Self.maxMessages) items are allowed.")
            }
            for (i, item) in items.enumerated() {
                func text(_ c: ResponsesContent?, _ field: String) throws -> String {
                    switch c {
                    case .text(let s): return s
                    case .parts(let parts):
                        return try parts.enumerated().map { j, p in
                            guard ["input_text", "output_text", "text"].contains(p.type), let t = p.text else {
                                throw APIError.invalidValue("input[\(i)].\(field)[\(j)]", "only text parts (input_text, output_text) are supported, not '\(p.type)'.")
                            }
                            return t
                        }.joined(separator: "\n")
                    case nil:
                        throw APIError.invalidRequest("Missing required parameter: 'input[\(i)].\(field)'.",
                                                      param: "input[\(i)].\(field)", code: "missing_required_parameter")
                    }
                }
                switch item.type ?? "message" {
                case "message":
                    guard let role = item.role else {
                        throw APIError.invalidRequest("Missing required parameter: 'input[\(i)].role'.",
                                                      param: "input[\(i)].role", code: "missing_required_parameter")
                    }
                    guard ["user", "assistant", "system", "developer"].contains(role) else {
                        throw APIError.invalidValue("input[\(i)].role", "'\(role)' is not one of 'user', 'assistant', 'system', 'developer'.")
                    }
                    new.append(ChatMessageParam(role: role, content: .text(try text(item.content, "content"))))
                case "function_call":
                    guard let callID = item.callID, let name = item.name else {
                        throw APIError.invalidRequest("A function_call item needs 'call_id' and 'name'.",
                                                      param: "input[\(i)]", code: "missing_required_parameter")
                    }
                    let call = ToolCall(id: callID, name: name, arguments: item.arguments ?? "{}")
                    // Calls in a row are one assistant turn.
                    if let last = new.last, last.role == "assistant", last.content == nil, last.toolCalls != nil {
                        new[new.count - 1].toolCalls!.append(call)
                    } else {
                        new.append(ChatMessageParam(role: "assistant", content: nil, toolCalls: [call]))
                    }
                case "function_call_output":
                    guard let callID = item.callID else {
                        throw APIError.invalidRequest("Missing required parameter: 'input[\(i)].call_id'.",
                                                      param: "input[\(i)].call_id", code: "missing_required_parameter")
                    }
                    new.append(ChatMessageParam(role: "tool", content: .text(try text(item.output, "output")), toolCallID: callID))
                case "reasoning":
                    continue
                case let other:
                    throw APIError.invalidValue("input[\(i)].type", "'\(other)' items are not supported (message, function_call, function_call_output).")
                }
            }
        }
        return (history, new)
    }

    /// The chat completion request a Responses request runs as.
    func chatRequest(_ body: ResponsesRequest, messages: [ChatMessageParam]) throws -> ChatCompletionRequest {
        var chat = ChatCompletionRequest(model: body.model, messages: messages)
        chat.maxCompletionTokens = body.maxOutputTokens
        chat.temperature = body.temperature
        chat.topP = body.topP
        chat.seed = body.seed
        chat.user = body.user
        chat.parallelToolCalls = body.parallelToolCalls
        if let tools = body.tools {
            guard tools.count <= Self.maxTools else { throw APIError.invalidValue("tools", "at most \(Self.maxTools) tools are allowed.") }
            chat.tools = try tools.enumerated().map { i, t in
                guard t.type == "function" else {
                    throw APIError.invalidValue("tools[\(i)].type", "only 'function' tools are supported, not '\(t.type)'.")
                }
                guard let name = t.name else {
                    throw APIError.invalidRequest("Missing required parameter: 'tools[\(i)].name'.", param: "tools[\(i)].name",
                                                  code: "missing_required_parameter")
                }
                var f = FunctionDefinition(name: name, description: t.description, parameters: t.parameters)
                f.strict = t.strict
                return ToolDefinition(function: f)
            }
        }
        switch body.toolChoice {
        case nil: break
        case .mode("none"): chat.toolChoice = ToolChoice.none
        case .mode("auto"): chat.toolChoice = .auto
        case .mode("required"): chat.toolChoice = .required
        case .mode(let other): throw APIError.invalidValue("tool_choice", "'\(other)' is not one of 'none', 'auto', 'required'.")
        case .function(let name): chat.toolChoice = .function(name)
        }
        if let format = body.text?.format {
            switch format.type {
            case "text": break
            case "json_object": chat.responseFormat = ResponseFormat(type: "json_object")
            case "json_schema":
                var schema = JSONSchemaFormat(name: format.name, schema: format.schema, strict: format.strict)
                schema.description = format.description
                chat.responseFormat = ResponseFormat(type: "json_schema", jsonSchema: schema)
            case let other:
                throw APIError.invalidValue("text.format.type", "'\(other)' is not one of 'text', 'json_object', 'json_schema'.")
            }
        }
        return chat
    }

    /// `owner` nil: the caller stores the response (see `callerStoresHeader`); it is answered as asked, not kept here.
    func responses(_ body: ResponsesRequest, owner: String?, logger: Logger, clientGone: @escaping @Sendable () -> Bool)
        async throws -> Response
    {
        let start = Self.now()
        let (history, new) = try responsesMessages(body, owner: owner)
        var messages = history
        if let instructions = body.instructions { messages.append(ChatMessageParam(role: "system", content: .text(instructions))) }
        messages += new
        let prepared: PreparedChat
        do {
            prepared = try prepareChat(try chatRequest(body, messages: messages), clientGone: clientGone)
        } catch var e as APIError {
            // The chat request's names for this request's parameters.
            let names = [("max_completion_tokens", "max_output_tokens"), ("messages", "input"),
                         ("response_format.json_schema.schema", "text.format.schema"), ("response_format", "text.format")]
            if let p = e.param {
                for (chat, own) in names where p == chat || p.hasPrefix(chat + ".") || p.hasPrefix(chat + "[") {
                    e.param = own + p.dropFirst(chat.count)
                    e.message = e.message.replacingOccurrences(of: "'\(chat)'", with: "'\(own)'")
                    break
                }
            }
            throw e
        }
        guard prepared.requests.count == 1 else { throw APIError.invalidValue("n", "the Responses API makes one reply.") }
        let streams = try submit(prepared.requests, to: prepared.service)
        metrics.prompt(tokens: prepared.prompt.count)

        let id = Self.newID("resp_")
        let created = Int(Date().timeIntervalSince1970)
        let store = body.store ?? true
        let object = ResponseObject(
            id: id, createdAt: created, status: "in_progress", model: prepared.model.id, output: [], usage: nil,
            instructions: body.instructions, maxOutputTokens: body.maxOutputTokens, temperature: body.temperature ?? 1,
            topP: body.topP ?? 1, tools: body.tools ?? [], toolChoice: body.toolChoice ?? .mode("auto"),
            parallelToolCalls: body.parallelToolCalls ?? true, previousResponseID: body.previousResponseID, store: store,
            text: body.text ?? ResponsesText(format: .init(type: "text")), incompleteDetails: nil,
            metadata: body.metadata ?? [:], user: body.user)
        let shape = prepared.shape
        let promptCount = prepared.prompt.count

        /// The finished object, stored with the conversation it ends (history, new input, and its output).
        @Sendable func complete(_ result: GenerationResult, output: [ResponsesOutputItem]) -> ResponseObject {
            var done = object
            done.output = output
            done.status = result.finishReason == .length ? "incomplete" : "completed"
            if result.finishReason == .length { done.incompleteDetails = .init(reason: "max_output_tokens") }
            done.usage = ResponsesUsage(inputTokens: promptCount, inputTokensDetails: .init(cachedTokens: result.cachedPromptTokens),
                                        outputTokens: result.tokens.count, totalTokens: promptCount + result.tokens.count)
            if store, let owner {
                var reply: ChatMessageParam
                let calls = output.compactMap { item -> ToolCall? in
                    if case .functionCall(_, let callID, let name, let arguments, _) = item {
                        return ToolCall(id: callID, name: name, arguments: arguments)
                    }
                    return nil
                }
                if calls.isEmpty {
                    reply = ChatMessageParam(role: "assistant", content: .text(result.text))
                } else {
                    reply = ChatMessageParam(role: "assistant", content: nil, toolCalls: calls)
                }
                responses.save(id, .init(owner: owner, object: done, conversation: history + new + [reply]))
            }
            return done
        }

        if body.stream != true {
            let result = try await run(streams, start: start)[0]
            var output: [ResponsesOutputItem] = []
            if let calls = Self.toolCalls(in: result.text, shape: shape, finish: result.finishReason) {
                output = calls.map {
                    .functionCall(id: Self.newID("fc_"), callID: $0.id, name: $0.function.name,
                                  arguments: $0.function.arguments, status: "completed")
                }
            } else {
                output = [.message(id: Self.newID("msg_"), text: result.text, status: "completed")]
            }
            return JSONResponse.make(status: .ok, complete(result, output: output))
        }

        return Self.streamResponse(logger: logger, promptTokens: promptCount, done: false) { writer in
            var sequence = 0
            func send(_ type: String, _ fields: [String: any Encodable & Sendable]) async throws {
                try await Self.write(Self.typedEvent(type, sequence: sequence, fields), to: &writer)
                sequence += 1
            }
            try await send("response.created", ["response": object])
            try await send("response.in_progress", ["response": object])
            var reply = StreamedReply(shape: shape)
            let messageID = Self.newID("msg_")
            var text = ""
            var messageOpen = false
            // Calls by their index in the reply: item id, call id, name, arguments so far.
            var calls: [(id: String, callID: String, name: String, arguments: String)] = []
            /// The message item and its text part, announced before its first text (or at the end, if it has none).
            func openMessage() async throws {
                guard !messageOpen else { return }
                messageOpen = true
                try await send("response.output_item.added", [
                    "output_index": 0, "item": ResponsesOutputItem.message(id: messageID, text: "", status: "in_progress")])
                try await send("response.content_part.added", [
                    "item_id": messageID, "output_index": 0, "content_index": 0, "part": ResponsesOutputItem.OutputText(text: "")])
            }
            func handle(_ delta: ChatDelta) async throws {
                if let content = delta.content, !content.isEmpty {
                    try await openMessage()
                    text += content
                    try await send("response.output_text.delta", [
                        "item_id": messageID, "output_index": 0, "content_index": 0, "delta": content, "logprobs": [String]()])
                }
                for d in delta.toolCalls ?? [] {
                    if d.index == calls.count, let callID = d.id, let name = d.function.name {
                        calls.append((Self.newID("fc_"), callID, name, ""))
                        try await send("response.output_item.added", [
                            "output_index": d.index,
                            "item": ResponsesOutputItem.functionCall(id: calls[d.index].id, callID: callID, name: name,
                                                                     arguments: "", status: "in_progress")])
                    }
                    guard d.index < calls.count, let args = d.function.arguments, !args.isEmpty else { continue }
                    calls[d.index].arguments += args
                    try await send("response.function_call_arguments.delta", [
                        "item_id": calls[d.index].id, "output_index": d.index, "delta": args])
                }
            }
            let result = try await self.run(streams, start: start, onEvent: { _, event in
                switch event {
                case .step(let step):
                    guard !step.text.isEmpty else { return }
                    for delta in reply.append(step.text) { try await handle(delta) }
                case .finished(let result):
                    for delta in reply.finish(result).0 { try await handle(delta) }
                }
            })[0]
            var output: [ResponsesOutputItem] = []
            if calls.isEmpty {
                try await openMessage()
                try await send("response.output_text.done", [
                    "item_id": messageID, "output_index": 0, "content_index": 0, "text": text, "logprobs": [String]()])
                try await send("response.content_part.done", [
                    "item_id": messageID, "output_index": 0, "content_index": 0, "part": ResponsesOutputItem.OutputText(text: text)])
                let item = ResponsesOutputItem.message(id: messageID, text: text, status: "completed")
                try await send("response.output_item.done", ["output_index": 0, "item": item])
                output = [item]
            } else {
                for (k, c) in calls.enumerated() {
                    try await send("response.function_call_arguments.done", [
                        "item_id": c.id, "output_index": k, "arguments": c.arguments])
                    let item = ResponsesOutputItem.functionCall(id: c.id, callID: c.callID, name: c.name, arguments: c.arguments,
                                                                status: "completed")
                    try await send("response.output_item.done", ["output_index": k, "item": item])
                    output.append(item)
                }
            }
            let done = complete(result, output: output)
            try await send(done.status == "completed" ? "response.completed" : "response.incomplete", ["response": done])
        }
    }

    /// `event: TYPE` and `data: {"type": TYPE, "sequence_number": N, ...}`.
    static func typedEvent(_ type: String, sequence: Int, _ fields: [String: any Encodable & Sendable]) -> ByteBuffer {
        struct Body: Encodable {
            var type: String
            var sequence: Int
            var fields: [String: any Encodable & Sendable]
            struct Key: CodingKey {
                var stringValue: String
                var intValue: Int? { nil }
                init(_ s: String) { stringValue = s }
                init?(stringValue: String) { self.stringValue = stringValue }
                init?(intValue: Int) { nil }
            }
            func encode(to encoder: Encoder) throws {
                var c = encoder.container(keyedBy: Key.self)
                try c.encode(type, forKey: Key("type"))
                try c.encode(sequence, forKey: Key("sequence_number"))
                for (k, v) in fields { try c.encode(v, forKey: Key(k)) }
            }
        }
        var buffer = ByteBuffer(string: "event: \(type)\ndata: ")
        var json = JSONResponse.encode(Body(type: type, sequence: sequence, fields: fields))
        buffer.writeBuffer(&json)
        buffer.writeString("\n\n")
        return buffer
    }
}

public struct ResponseDeleted: Encodable, Sendable {
    public var id: String
    public var object = "response.deleted"
    public var deleted = true

    public init(id: String) { self.id = id }
}

extension OpenAIServer {
    /// `serve` has one credential (its --api-key, or none): every stored response belongs to it.
    static let responsesOwner = "local"

    /// Sent by a gateway that keeps stored responses itself: `input` already holds the conversation that
    /// `previous_response_id` names, and the replica keeps nothing (`store` and the id are only echoed).
    public static let callerStoresHeader = "X-Swiftlet-Response-Store"
}
