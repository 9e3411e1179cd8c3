import Engine
import Grammar
// The OpenAI wire format: every request and response body the server reads or writes.
// Field names are OpenAI's (snake_case); fields that OpenAI sends as `null` are encoded as null.

// MARK: - Shared request pieces

/// `stop`: one string or an array of strings.
public struct StopSequences: Codable, Sendable, Equatable {
    public var values: [String]

    public init(_ values: [String]) { self.values = values }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) {
            values = [s]
        } else if let a = try? c.decode([String].self) {
            values = a
        } else {
            throw DecodingError.typeMismatch([String].self, .init(
                codingPath: c.codingPath, debugDescription: "expected a string or an array of strings"))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(values)
    }
}

public struct StreamOptions: Codable, Sendable, Equatable {
    public var includeUsage: Bool?

    public init(includeUsage: Bool? = nil) { self.includeUsage = includeUsage }

    enum CodingKeys: String, CodingKey {
        case includeUsage = "include_usage"
    }
}

// MARK: - POST /v1/chat/completions

public struct ChatCompletionRequest: Codable, Sendable {
    public var model: String
    public var messages: [ChatMessageParam]
    public var maxTokens: Int?
    public var maxCompletionTokens: Int?
    public var temperature: Double?
    public var topP: Double?
    public var n: Int?
    public var stop: StopSequences?
    public var seed: Int?
    public var presencePenalty: Double?
    public var frequencyPenalty: Double?
    /// Token id (as a string) to a bias in [-100, 100].
    public var logitBias: [String: Double]?
    public var logprobs: Bool?
    public var topLogprobs: Int?
    public var user: String?
    public var stream: Bool?
    public var streamOptions: StreamOptions?
    // Extensions beyond OpenAI's parameters (as in vLLM and llama.cpp's server).
    public var topK: Int?
    public var minP: Double?
    public var repetitionPenalty: Double?
    public var ignoreEOS: Bool?
    /// Scheduling priority when requests compete (higher first), as in vLLM.
    public var priority: Int?
    public var responseFormat: ResponseFormat?
    public var tools: [ToolDefinition]?
    public var toolChoice: ToolChoice?
    public var parallelToolCalls: Bool?

    public init(model: String, messages: [ChatMessageParam]) {
        self.model = model
        self.messages = messages
    }

    enum CodingKeys: String, CodingKey {
        case model, messages, temperature, n, stop, seed, logprobs, user, stream, priority, tools
        case responseFormat = "response_format"
        case toolChoice = "tool_choice"
        case parallelToolCalls = "parallel_tool_calls"
        case maxTokens = "max_tokens"
        case maxCompletionTokens = "max_completion_tokens"
        case topP = "top_p"
        case presencePenalty = "presence_penalty"
        case frequencyPenalty = "frequency_penalty"
        case logitBias = "logit_bias"
        case topLogprobs = "top_logprobs"
        case streamOptions = "stream_options"
        case topK = "top_k"
        case minP = "min_p"
        case repetitionPenalty = "repetition_penalty"
        case ignoreEOS = "ignore_eos"
    }
}

public struct ChatMessageParam: Codable, Sendable, Equatable {
    public var role: String
    /// Absent or null only for assistant messages.
    public var content: MessageContent?
    public var name: String?
    /// The calls an assistant message made.
    public var toolCalls: [ToolCall]?
    /// The call a `tool` message answers.
    public var toolCallID: String?

    public init(role: String, content: MessageContent?, name: String? = nil, toolCalls: [ToolCall]? = nil,
                toolCallID: String? = nil) {
        self.role = role
        self.content = content
        self.name = name
        self.toolCalls = toolCalls
        self.toolCallID = toolCallID
    }

    enum CodingKeys: String, CodingKey {
        case role, content, name
        case toolCalls = "tool_calls"
        case toolCallID = "tool_call_id"
    }
}

// MARK: - Structured output and tools

/// `response_format`: `{"type": "text"}`, `{"type": "json_object"}` or
/// `{"type": "json_schema", "json_schema": {"name", "description", "schema", "strict"}}`.
public struct ResponseFormat: Codable, Sendable, Equatable {
    public var type: String
    public var jsonSchema: JSONSchemaFormat?

    public init(type: String, jsonSchema: JSONSchemaFormat? = nil) {
        self.type = type
        self.jsonSchema = jsonSchema
    }

    enum CodingKeys: String, CodingKey {
        case type
        case jsonSchema = "json_schema"
    }
}

public struct JSONSchemaFormat: Codable, Sendable, Equatable {
    public var name: String?
    public var description: String?
    public var schema: JSONValue?
    public var strict: Bool?

    public init(name: String? = nil, schema: JSONValue?, strict: Bool? = nil) {
        self.name = name
        self.schema = schema
        self.strict = strict
    }
}

/// One entry of `tools`: `{"type": "function", "function": {"name", "description", "parameters", "strict"}}`.
public struct ToolDefinition: Codable, Sendable, Equatable {
    public var type: String
    public var function: FunctionDefinition

    public init(function: FunctionDefinition) {
        type = "function"
        self.function = function
    }
}

public struct FunctionDefinition: Codable, Sendable, Equatable {
    public var name: String
    public var description: String?
    /// JSON Schema of the arguments object (absent: no arguments).
    public var parameters: JSONValue?
    public var strict: Bool?

    public init(name: String, description: String? = nil, parameters: JSONValue? = nil) {
        self.name = name
        self.description = description
        self.parameters = parameters
    }
}

/// `tool_choice`: "none", "auto", "required", or `{"type": "function", "function": {"name": ...}}`.
public enum ToolChoice: Codable, Sendable, Equatable {
    case none
    case auto
    case required
    case function(String)

    struct Named: Codable {
        struct Function: Codable { var name: String }
        var type: String
        var function: Function
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) {
            switch s {
            case "none": self = .none
            case "auto": self = .auto
            case "required": self = .required
            default:
                throw DecodingError.dataCorrupted(.init(
                    codingPath: c.codingPath, debugDescription: "'\(s)' is not one of 'none', 'auto', 'required'."))
            }
            return
        }
        let named: Named
        do {
            named = try c.decode(Named.self)
        } catch DecodingError.typeMismatch(_, let ctx) where ctx.codingPath.count == c.codingPath.count {
            throw DecodingError.typeMismatch(String.self, .init(
                codingPath: c.codingPath, debugDescription: "expected 'none', 'auto', 'required' or a named function"))
        }
        guard named.type == "function" else {
            throw DecodingError.dataCorrupted(.init(
                codingPath: c.codingPath, debugDescription: "only tools of type 'function' are supported."))
        }
        self = .function(named.function.name)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .none: try c.encode("none")
        case .auto: try c.encode("auto")
        case .required: try c.encode("required")
        case .function(let name): try c.encode(Named(type: "function", function: .init(name: name)))
        }
    }
}

/// A call of a function: in an assistant message (request or response). `arguments` is JSON text.
public struct ToolCall: Codable, Sendable, Equatable {
    public var id: String
    public var type: String
    public var function: FunctionCall

    public init(id: String, name: String, arguments: String) {
        self.id = id
        type = "function"
        function = FunctionCall(name: name, arguments: arguments)
    }
}

public struct FunctionCall: Codable, Sendable, Equatable {
    public var name: String
    public var arguments: String

    public init(name: String, arguments: String) {
        self.name = name
        self.arguments = arguments
    }
}

/// A piece of a streamed tool call: the first names the call (id, type, name), the next ones carry
/// more of `arguments`.
public struct ToolCallDelta: Codable, Sendable, Equatable {
    public struct Function: Codable, Sendable, Equatable {
        public var name: String?
        public var arguments: String?
    }

    public var index: Int
    public var id: String?
    public var type: String?
    public var function: Function

    public init(index: Int, id: String? = nil, name: String? = nil, arguments: String?) {
        self.index = index
        self.id = id
        type = id == nil ? nil : "function"
        function = Function(name: name, arguments: arguments)
    }
}

/// A field that is a string or an array of `Element` (OpenAI's content and input fields). The array is
/// decoded for real, so that an error inside an element names that element; a value that is neither
/// says what was `expected`.
enum StringOrArray<Element: Decodable> {
    case string(String)
    case array([Element])

    init(from decoder: Decoder, expected: String) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) {
            self = .string(s)
            return
        }
        do {
            self = .array(try c.decode([Element].self))
        } catch DecodingError.typeMismatch(_, let ctx) where ctx.codingPath.count == c.codingPath.count {
            throw DecodingError.typeMismatch(String.self, .init(codingPath: c.codingPath, debugDescription: "expected \(expected)"))
        }
    }
}

/// Message `content`: a string or an array of content parts.
public enum MessageContent: Codable, Sendable, Equatable {
    case text(String)
    case parts([ContentPart])

    public init(from decoder: Decoder) throws {
        switch try StringOrArray<ContentPart>(from: decoder, expected: "a string or an array of content parts") {
        case .string(let s): self = .text(s)
        case .array(let parts): self = .parts(parts)
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .text(let s): try c.encode(s)
        case .parts(let p): try c.encode(p)
        }
    }
}

public struct ContentPart: Codable, Sendable, Equatable {
    public var type: String
    public var text: String?

    public init(type: String = "text", text: String?) {
        self.type = type
        self.text = text
    }
}

// MARK: - POST /v1/completions

/// `prompt`: a string, an array of strings, an array of token ids, or an array of arrays of token ids.
public enum CompletionPrompt: Codable, Sendable, Equatable {
    case texts([String])
    case tokens([[Int]])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) {
            self = .texts([s])
        } else if let a = try? c.decode([String].self) {
            self = .texts(a)
        } else if let t = try? c.decode([Int].self) {
            self = .tokens([t])
        } else if let t = try? c.decode([[Int]].self) {
            self = .tokens(t)
        } else {
            throw DecodingError.typeMismatch(String.self, .init(
                codingPath: c.codingPath,
                debugDescription: "expected a string, an array of strings, or an array of token ids"))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .texts(let t): try c.encode(t)
        case .tokens(let t): try c.encode(t)
        }
    }
}

public struct CompletionRequest: Codable, Sendable {
    public var model: String
    public var prompt: CompletionPrompt
    public var maxTokens: Int?
    public var temperature: Double?
    public var topP: Double?
    public var n: Int?
    public var stop: StopSequences?
    public var seed: Int?
    public var presencePenalty: Double?
    public var frequencyPenalty: Double?
    public var logitBias: [String: Double]?
    /// Number of most likely alternatives to report per token (the legacy `logprobs`).
    public var logprobs: Int?
    public var echo: Bool?
    public var suffix: String?
    public var bestOf: Int?
    public var user: String?
    public var stream: Bool?
    public var streamOptions: StreamOptions?
    public var topK: Int?
    public var minP: Double?
    public var repetitionPenalty: Double?
    public var ignoreEOS: Bool?
    public var priority: Int?
    public var responseFormat: ResponseFormat?

    public init(model: String, prompt: CompletionPrompt) {
        self.model = model
        self.prompt = prompt
    }

    enum CodingKeys: String, CodingKey {
        case model, prompt, temperature, n, stop, seed, logprobs, echo, suffix, user, stream, priority
        case responseFormat = "response_format"
        case maxTokens = "max_tokens"
        case topP = "top_p"
        case presencePenalty = "presence_penalty"
        case frequencyPenalty = "frequency_penalty"
        case logitBias = "logit_bias"
        case bestOf = "best_of"
        case streamOptions = "stream_options"
        case topK = "top_k"
        case minP = "min_p"
        case repetitionPenalty = "repetition_penalty"
        case ignoreEOS = "ignore_eos"
    }
}

// MARK: - Responses

public struct Usage: Codable, Sendable, Equatable {
    public var promptTokens: Int
    public var completionTokens: Int
    public var totalTokens: Int
    public var promptTokensDetails: PromptTokensDetails?

    public init(promptTokens: Int, completionTokens: Int, cachedTokens: Int? = nil) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        totalTokens = promptTokens + completionTokens
        promptTokensDetails = cachedTokens.map { PromptTokensDetails(cachedTokens: $0) }
    }

    /// Usage of finished choices of prompts totalling `promptTokens` (cached tokens counted once per prompt).
    init(promptTokens: Int, results: [GenerationResult], choicesPerPrompt: Int) {
        let cached = stride(from: 0, to: results.count, by: max(choicesPerPrompt, 1))
            .reduce(0) { $0 + results[$1..<min($1 + choicesPerPrompt, results.count)].map(\.cachedPromptTokens).max()! }
        self.init(promptTokens: promptTokens, completionTokens: results.reduce(0) { $0 + $1.tokens.count },
                  cachedTokens: cached)
    }

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
        case totalTokens = "total_tokens"
        case promptTokensDetails = "prompt_tokens_details"
    }
}

public struct PromptTokensDetails: Codable, Sendable, Equatable {
    /// Prompt tokens whose keys and values came from the prefix cache.
    public var cachedTokens: Int

    enum CodingKeys: String, CodingKey {
        case cachedTokens = "cached_tokens"
    }
}

/// A log-probability as JSON allows it: never infinite or NaN.
func finiteLogprob(_ x: Float) -> Float { x.isFinite ? x : -9999 }

public struct TopLogprob: Codable, Sendable, Equatable {
    public var token: String
    public var logprob: Float
    public var bytes: [Int]?

    public init(token: String, logprob: Float, bytes: [Int]?) {
        self.token = token
        self.logprob = logprob
        self.bytes = bytes
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(token, forKey: .token)
        try c.encode(finiteLogprob(logprob), forKey: .logprob)
        try c.encode(bytes, forKey: .bytes)
    }
}

public struct ChatTokenLogprob: Codable, Sendable, Equatable {
    public var token: String
    public var logprob: Float
    public var bytes: [Int]?
    public var topLogprobs: [TopLogprob]

    public init(token: String, logprob: Float, bytes: [Int]?, topLogprobs: [TopLogprob]) {
        self.token = token
        self.logprob = logprob
        self.bytes = bytes
        self.topLogprobs = topLogprobs
    }

    enum CodingKeys: String, CodingKey {
        case token, logprob, bytes
        case topLogprobs = "top_logprobs"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(token, forKey: .token)
        try c.encode(finiteLogprob(logprob), forKey: .logprob)
        try c.encode(bytes, forKey: .bytes)
        try c.encode(topLogprobs, forKey: .topLogprobs)
    }
}

public struct ChatChoiceLogprobs: Codable, Sendable, Equatable {
    public var content: [ChatTokenLogprob]?
    public var refusal: [ChatTokenLogprob]?

    public init(content: [ChatTokenLogprob]?) { self.content = content }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(content, forKey: .content)
        try c.encode(refusal, forKey: .refusal)
    }
}

public struct ChatCompletionMessage: Codable, Sendable, Equatable {
    public var role: String
    public var content: String?
    public var refusal: String?
    /// Present only when the reply calls tools (then `content` is null).
    public var toolCalls: [ToolCall]?

    public init(role: String = "assistant", content: String?, toolCalls: [ToolCall]? = nil) {
        self.role = role
        self.content = content
        self.toolCalls = toolCalls
    }

    enum CodingKeys: String, CodingKey {
        case role, content, refusal
        case toolCalls = "tool_calls"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(role, forKey: .role)
        try c.encode(content, forKey: .content)
        try c.encode(refusal, forKey: .refusal)
        try c.encodeIfPresent(toolCalls, forKey: .toolCalls)
    }
}

public struct ChatCompletionChoice: Codable, Sendable, Equatable {
    public var index: Int
    public var message: ChatCompletionMessage
    public var logprobs: ChatChoiceLogprobs?
    public var finishReason: String

    public init(index: Int, message: ChatCompletionMessage, logprobs: ChatChoiceLogprobs?, finishReason: String) {
        self.index = index
        self.message = message
        self.logprobs = logprobs
        self.finishReason = finishReason
    }

    enum CodingKeys: String, CodingKey {
        case index, message, logprobs
        case finishReason = "finish_reason"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index)
        try c.encode(message, forKey: .message)
        try c.encode(logprobs, forKey: .logprobs)
        try c.encode(finishReason, forKey: .finishReason)
    }
}

public struct ChatCompletion: Codable, Sendable, Equatable {
    public var id: String
    public var object = "chat.completion"
    public var created: Int
    public var model: String
    public var choices: [ChatCompletionChoice]
    public var usage: Usage
    public var systemFingerprint: String?

    public init(id: String, created: Int, model: String, choices: [ChatCompletionChoice], usage: Usage) {
        self.id = id
        self.created = created
        self.model = model
        self.choices = choices
        self.usage = usage
    }

    enum CodingKeys: String, CodingKey {
        case id, object, created, model, choices, usage
        case systemFingerprint = "system_fingerprint"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(object, forKey: .object)
        try c.encode(created, forKey: .created)
        try c.encode(model, forKey: .model)
        try c.encode(choices, forKey: .choices)
        try c.encode(usage, forKey: .usage)
        try c.encode(systemFingerprint, forKey: .systemFingerprint)
    }
}

public struct ChatDelta: Codable, Sendable, Equatable {
    public var role: String?
    public var content: String?
    public var toolCalls: [ToolCallDelta]?

    public init(role: String? = nil, content: String? = nil, toolCalls: [ToolCallDelta]? = nil) {
        self.role = role
        self.content = content
        self.toolCalls = toolCalls
    }

    enum CodingKeys: String, CodingKey {
        case role, content
        case toolCalls = "tool_calls"
    }
}

public struct ChatChunkChoice: Codable, Sendable, Equatable {
    public var index: Int
    public var delta: ChatDelta
    public var logprobs: ChatChoiceLogprobs?
    public var finishReason: String?

    public init(index: Int, delta: ChatDelta, logprobs: ChatChoiceLogprobs? = nil, finishReason: String? = nil) {
        self.index = index
        self.delta = delta
        self.logprobs = logprobs
        self.finishReason = finishReason
    }

    enum CodingKeys: String, CodingKey {
        case index, delta, logprobs
        case finishReason = "finish_reason"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index)
        try c.encode(delta, forKey: .delta)
        try c.encode(logprobs, forKey: .logprobs)
        try c.encode(finishReason, forKey: .finishReason)
    }
}

/// One server-sent event of a streamed chat completion. The usage chunk has no choices.
public typealias ChatCompletionChunk = CompletionEnvelope<ChatChunkChoice>

/// The choice types of the two envelopes, and the `object` each envelope names.
public protocol EnvelopeChoice: Codable, Sendable, Equatable {
    static var objectName: String { get }
}

extension ChatChunkChoice: EnvelopeChoice {
    public static let objectName = "chat.completion.chunk"
}

extension CompletionChoice: EnvelopeChoice {
    public static let objectName = "text_completion"
}

/// The outer object of streamed chat chunks and of completions (whole or streamed): id, object, created, model,
/// choices, usage.
public struct CompletionEnvelope<Choice: EnvelopeChoice>: Codable, Sendable, Equatable {
    public var id: String
    public var object = Choice.objectName
    public var created: Int
    public var model: String
    public var choices: [Choice]
    public var usage: Usage?
    public var systemFingerprint: String?
    /// With `stream_options.include_usage`, every chunk carries `usage` (null until the last).
    public var encodesUsage = false

    public init(id: String, created: Int, model: String, choices: [Choice], usage: Usage? = nil) {
        self.id = id
        self.created = created
        self.model = model
        self.choices = choices
        self.usage = usage
    }

    enum CodingKeys: String, CodingKey {
        case id, object, created, model, choices, usage
        case systemFingerprint = "system_fingerprint"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(object, forKey: .object)
        try c.encode(created, forKey: .created)
        try c.encode(model, forKey: .model)
        try c.encode(choices, forKey: .choices)
        try c.encode(systemFingerprint, forKey: .systemFingerprint)
        if encodesUsage || usage != nil { try c.encode(usage, forKey: .usage) }
    }
}

/// The legacy completions `logprobs` object. `token_logprobs` and `top_logprobs` are null for the
/// first echoed prompt token, which has nothing before it.
public struct CompletionLogprobs: Codable, Sendable, Equatable {
    public var tokens: [String]
    public var tokenLogprobs: [Float?]
    public var topLogprobs: [[String: Float]?]
    public var textOffset: [Int]

    public init(tokens: [String] = [], tokenLogprobs: [Float?] = [], topLogprobs: [[String: Float]?] = [],
                textOffset: [Int] = []) {
        self.tokens = tokens
        self.tokenLogprobs = tokenLogprobs
        self.topLogprobs = topLogprobs
        self.textOffset = textOffset
    }

    enum CodingKeys: String, CodingKey {
        case tokens
        case tokenLogprobs = "token_logprobs"
        case topLogprobs = "top_logprobs"
        case textOffset = "text_offset"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(tokens, forKey: .tokens)
        try c.encode(tokenLogprobs.map { $0.map(finiteLogprob) }, forKey: .tokenLogprobs)
        try c.encode(topLogprobs.map { $0?.mapValues(finiteLogprob) }, forKey: .topLogprobs)
        try c.encode(textOffset, forKey: .textOffset)
    }
}

public struct CompletionChoice: Codable, Sendable, Equatable {
    public var index: Int
    public var text: String
    public var logprobs: CompletionLogprobs?
    /// Null in streamed chunks until the last one of the choice.
    public var finishReason: String?

    public init(index: Int, text: String, logprobs: CompletionLogprobs?, finishReason: String?) {
        self.index = index
        self.text = text
        self.logprobs = logprobs
        self.finishReason = finishReason
    }

    enum CodingKeys: String, CodingKey {
        case index, text, logprobs
        case finishReason = "finish_reason"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index)
        try c.encode(text, forKey: .text)
        try c.encode(logprobs, forKey: .logprobs)
        try c.encode(finishReason, forKey: .finishReason)
    }
}

/// A completion, and also each streamed chunk of one (same shape).
public typealias Completion = CompletionEnvelope<CompletionChoice>

// MARK: - GET /v1/models

public struct ModelObject: Codable, Sendable, Equatable {
    public var id: String
    public var object = "model"
    public var created: Int
    public var ownedBy: String

    public init(id: String, created: Int, ownedBy: String) {
        self.id = id
        self.created = created
        self.ownedBy = ownedBy
    }

    enum CodingKeys: String, CodingKey {
        case id, object, created
        case ownedBy = "owned_by"
    }
}

public struct ModelList: Codable, Sendable, Equatable {
    public var object = "list"
    public var data: [ModelObject]

    public init(data: [ModelObject]) { self.data = data }
}

// MARK: - Errors

/// `{"error": {"message", "type", "param", "code"}}`, with null `param` and `code` when they do not apply.
public struct ErrorResponse: Codable, Sendable, Equatable {
    public struct Body: Codable, Sendable, Equatable {
        public var message: String
        public var type: String
        public var param: String?
        public var code: String?

        public init(message: String, type: String, param: String?, code: String?) {
            self.message = message
            self.type = type
            self.param = param
            self.code = code
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(message, forKey: .message)
            try c.encode(type, forKey: .type)
            try c.encode(param, forKey: .param)
            try c.encode(code, forKey: .code)
        }
    }

    public var error: Body

    public init(error: Body) { self.error = error }
}
