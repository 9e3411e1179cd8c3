import Engine
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import Templates
import Tokenizer

/// Sampling settings shared by both completion endpoints, checked against OpenAI's ranges.
public struct SamplingRequest: Sendable {
    public var temperature: Double?
    public var topP: Double?
    public var topK: Int?
    public var minP: Double?
    public var repetitionPenalty: Double?
    public var presencePenalty: Double?
    public var frequencyPenalty: Double?
    public var logitBias: [String: Double]?
    public var seed: Int?
    public var n: Int?
    public var stop: StopSequences?

    public static let maxStops = 16

    /// Checks the counts of the request (choices, stop strings, biased tokens) before anything is built
    /// from them: a count is never used in arithmetic or allocation unchecked.
    public func checkCounts(maxChoices: Int, vocabularySize: Int) throws {
        if let n, n < 1 || n > maxChoices {
            throw APIError.invalidValue("n", n < 1 ? "must be >= 1." : "at most \(maxChoices) choices per request are allowed.")
        }
        if let count = stop?.values.count, count > Self.maxStops {
            throw APIError.invalidValue("stop", "at most \(Self.maxStops) stop sequences are allowed.")
        }
        if let count = logitBias?.count, count > vocabularySize {
            throw APIError.invalidValue("logit_bias", "at most \(vocabularySize) tokens may be biased.")
        }
    }

    public init(
        temperature: Double? = nil, topP: Double? = nil, topK: Int? = nil, minP: Double? = nil,
        repetitionPenalty: Double? = nil, presencePenalty: Double? = nil, frequencyPenalty: Double? = nil,
        logitBias: [String: Double]? = nil, seed: Int? = nil, n: Int? = nil, stop: StopSequences? = nil
    ) {
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
        self.logitBias = logitBias
        self.seed = seed
        self.n = n
        self.stop = stop
    }

    /// Parameters for each of `n` choices. With a seed, choice i samples with seed + i, so a request
    /// with a seed is reproducible and its choices still differ.
    public func parameters(vocabularySize: Int, maxChoices: Int = 16) throws -> (base: SamplingParameters, n: Int, stop: [String]) {
        func check(_ ok: Bool, _ param: String, _ message: String) throws {
            if !ok { throw APIError.invalidValue(param, message) }
        }
        try checkCounts(maxChoices: maxChoices, vocabularySize: vocabularySize)
        var p = SamplingParameters(temperature: 1, topP: 1)
        if let t = temperature {
            try check(t.isFinite && t >= 0 && t <= 2, "temperature", "must be between 0 and 2.")
            p.temperature = Float(t)
        }
        if let t = topP {
            try check(t.isFinite && t >= 0 && t <= 1, "top_p", "must be between 0 and 1.")
            // top_p 0 keeps only the most likely token.
            if t == 0 { p.topK = 1 } else { p.topP = Float(t) }
        }
        if let k = topK {
            try check(k >= 0, "top_k", "must be >= 0 (0 = off).")
            if p.topK == 0 { p.topK = k }
        }
        if let m = minP {
            try check(m.isFinite && m >= 0 && m <= 1, "min_p", "must be between 0 and 1.")
            p.minP = Float(m)
        }
        if let r = repetitionPenalty {
            try check(r.isFinite && r > 0 && r <= 10, "repetition_penalty", "must be in (0, 10].")
            p.repetitionPenalty = Float(r)
        }
        if let v = presencePenalty {
            try check(v.isFinite && v >= -2 && v <= 2, "presence_penalty", "must be between -2 and 2.")
            p.presencePenalty = Float(v)
        }
        if let v = frequencyPenalty {
            try check(v.isFinite && v >= -2 && v <= 2, "frequency_penalty", "must be between -2 and 2.")
            p.frequencyPenalty = Float(v)
        }
        if let bias = logitBias {
            for (key, value) in bias {
                guard let token = Int(key), token >= 0, token < vocabularySize else {
                    throw APIError.invalidValue("logit_bias", "'\(key)' is not a token id of this model (0..<\(vocabularySize)).")
                }
                try check(value.isFinite && value >= -100 && value <= 100, "logit_bias",
                          "bias for token \(token) must be between -100 and 100.")
                p.logitBias[token] = Float(value)
            }
        }
        if let seed { p.seed = UInt64(bitPattern: Int64(seed)) }
        return (p, n ?? 1, stop?.values ?? [])
    }

    public static func forChoice(_ base: SamplingParameters, _ i: Int) -> SamplingParameters {
        var p = base
        if let s = base.seed { p.seed = s &+ UInt64(i) }
        return p
    }
}

/// When one choice produced its first token, and its result once finished.
struct ChoiceTracker {
    var firstTokenAt: Double?
    var result: GenerationResult?
}

/// A client that stopped reading: the generation must stop, nothing more can be written.
struct ClientGone: Error {}

extension OpenAIServer {
    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    static func finishReason(_ r: FinishReason) -> String { r == .length ? "length" : "stop" }

    static func newID(_ prefix: String) -> String {
        prefix + String(format: "%016llx%08x", UInt64.random(in: 0...UInt64.max), UInt32.random(in: 0...UInt32.max))
    }

    /// Submits every choice; if one is refused, the streams of those already queued are released here,
    /// which cancels them (they leave the queue).
    func submit(_ requests: [GenerationRequest], to service: any GenerationService) throws
        -> [AsyncThrowingStream<GenerationEvent, Error>]
    {
        guard requests.count <= configuration.maxChoices else {
            throw APIError.invalidValue("n", "at most \(configuration.maxChoices) choices per request are allowed.")
        }
        var streams: [AsyncThrowingStream<GenerationEvent, Error>] = []
        do {
            for r in requests { streams.append(try service.submit(r)) }
        } catch let e as GenerationServiceError {
            streams.removeAll()
            if case .queueFull = e { throw APIError.queueFull(retryAfterSeconds: configuration.retryAfterSeconds) }
            throw e
        }
        return streams
    }

    /// Runs `first`, then `body` on the events of all streams as they come (interleaved across choices).
    /// If either throws, or the task is cancelled, the sequences still waiting or running are cancelled.
    static func forEachEvent(
        of streams: [AsyncThrowingStream<GenerationEvent, Error>],
        first: () async throws -> Void = {},
        _ body: (Int, GenerationEvent) async throws -> Void
    ) async throws {
        let (merged, continuation) = AsyncThrowingStream.makeStream(of: (Int, GenerationEvent).self)
        let remaining = NIOLockedValueBox(streams.count)
        if streams.isEmpty { continuation.finish() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (i, stream) in streams.enumerated() {
                group.addTask {
                    do {
                        for try await event in stream { continuation.yield((i, event)) }
                        if remaining.withLockedValue({ $0 -= 1; return $0 }) == 0 { continuation.finish() }
                    } catch {
                        continuation.finish(throwing: error)
                    }
                }
            }
            try await first()
            for try await (i, event) in merged { try await body(i, event) }
            group.cancelAll()
        }
    }

    /// Collects results, counting tokens and timing as they come. `first` runs once the sequences are
    /// being consumed (a stream's opening chunks); `onEvent` sees each event.
    func run(
        _ streams: [AsyncThrowingStream<GenerationEvent, Error>], start: Double,
        first: () async throws -> Void = {},
        onEvent: (Int, GenerationEvent) async throws -> Void = { _, _ in }
    ) async throws -> [GenerationResult] {
        var trackers = [ChoiceTracker](repeating: ChoiceTracker(), count: streams.count)
        try await Self.forEachEvent(of: streams, first: first) { i, event in
            switch event {
            case .step(let step):
                if step.token != nil {
                    metrics.generated(tokens: 1)
                    if trackers[i].firstTokenAt == nil { trackers[i].firstTokenAt = Self.now() }
                }
            case .finished(let result):
                trackers[i].result = result
                metrics.sequence(result, timeToFirstToken: trackers[i].firstTokenAt.map { $0 - start })
            }
            try await onEvent(i, event)
        }
        return try trackers.map {
            guard let r = $0.result else { throw CancellationError() }
            return r
        }
    }

    // MARK: Logprobs

    func tokenText(_ id: Int, _ tokenizer: Tokenizer) -> (String, [Int]) {
        let bytes = tokenizer.tokenPiece(id, renderSpecial: true)
        return (String(decoding: bytes, as: UTF8.self), bytes.map(Int.init))
    }

    func chatLogprob(_ lp: TokenLogprob, _ tokenizer: Tokenizer) -> ChatTokenLogprob {
        let (text, bytes) = tokenText(lp.token, tokenizer)
        return ChatTokenLogprob(
            token: text, logprob: lp.logprob, bytes: bytes,
            topLogprobs: lp.top.map {
                let (t, b) = tokenText($0.token, tokenizer)
                return TopLogprob(token: t, logprob: $0.logprob, bytes: b)
            })
    }

    /// The legacy logprobs object for `entries` (nil logprob for the first prompt token), with text
    /// offsets counted in Unicode scalars from `offset`.
    func completionLogprobs(_ entries: [(token: Int, lp: TokenLogprob?)], offset: Int, _ tokenizer: Tokenizer)
        -> CompletionLogprobs
    {
        var out = CompletionLogprobs()
        var position = offset
        for (token, lp) in entries {
            let text = tokenText(token, tokenizer).0
            out.tokens.append(text)
            out.tokenLogprobs.append(lp?.logprob)
            out.topLogprobs.append(lp.map { lp in
                var top: [String: Float] = [:]
                for alt in lp.top {
                    let key = tokenText(alt.token, tokenizer).0
                    if top[key] == nil { top[key] = alt.logprob }
                }
                return top
            })
            out.textOffset.append(position)
            position += text.unicodeScalars.count
        }
        return out
    }

    // MARK: SSE

    static func event(_ value: some Encodable) -> ByteBuffer {
        var buffer = ByteBuffer(string: "data: ")
        var json = JSONResponse.encode(value)
        buffer.writeBuffer(&json)
        buffer.writeString("\n\n")
        return buffer
    }

    static let done = ByteBuffer(string: "data: [DONE]\n\n")

    static func write(_ buffer: ByteBuffer, to writer: inout any ResponseBodyWriter) async throws {
        do {
            try await writer.write(buffer)
        } catch {
            throw ClientGone()
        }
    }

    /// Response header of a stream with its prompt's token count, before any event: a gateway bills
    /// the prompt of a stream that breaks before its usage chunk by it.
    public static let promptTokensHeader = "X-Swiftlet-Prompt-Tokens"

    /// `done`: end a failed stream with `data: [DONE]` after its error event (chat and completions do; the
    /// Responses API sends an `error` event only).
    static func streamResponse(
        logger: Logger, promptTokens: Int, done terminate: Bool = true,
        _ produce: @escaping @Sendable (inout any ResponseBodyWriter) async throws -> Void
    ) -> Response {
        Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-cache",
                      HTTPField.Name(promptTokensHeader)!: String(promptTokens)],
            body: ResponseBody { writer in
                do {
                    try await produce(&writer)
                } catch is ClientGone {
                    logger.info("client disconnected: generation cancelled")
                    throw CancellationError()
                } catch is CancellationError {
                    throw CancellationError()
                } catch {
                    // Headers are out: report the failure as a last event.
                    var apiError = APIError.internalError
                    if let e = APIError.from(error) {
                        apiError = e
                    } else {
                        logger.error("generation failed", metadata: ["error": "\(String(reflecting: error))"])
                    }
                    if terminate {
                        try? await writer.write(event(apiError.body))
                        try? await writer.write(done)
                    } else {
                        var buffer = ByteBuffer(string: "event: error\ndata: ")
                        var json = JSONResponse.encode(apiError.body)
                        buffer.writeBuffer(&json)
                        buffer.writeString("\n\n")
                        try? await writer.write(buffer)
                    }
                }
                try await writer.finish(nil)
            })
    }

    // MARK: POST /v1/chat/completions

    /// OpenAI's limits on the lengths of `messages` and `tools`.
    public static let maxMessages = 2048
    public static let maxTools = 128

    /// A chat request checked and turned into generation requests (one per choice), not yet submitted.
    struct PreparedChat {
        var model: ServedModel
        var engine: InferenceEngine
        var service: any GenerationService
        var prompt: [Int]
        var requests: [GenerationRequest]
        var shape: ReplyShape
        var topLogprobs: Int?
    }

    func chatCompletion(_ body: ChatCompletionRequest, logger: Logger, clientGone: @escaping @Sendable () -> Bool = { false })
        async throws -> Response
    {
        let start = Self.now()
        let p = try prepareChat(body, clientGone: clientGone)
        let stream = body.stream ?? false
        if body.streamOptions != nil && !stream {
            throw APIError.invalidRequest("'stream_options' is only allowed when 'stream' is true.",
                                          param: "stream_options", code: "invalid_value")
        }
        let (model, engine, prompt, shape, topLogprobs, n) = (p.model, p.engine, p.prompt, p.shape, p.topLogprobs, p.requests.count)
        let streams = try submit(p.requests, to: p.service)
        metrics.prompt(tokens: prompt.count)

        let id = Self.newID("chatcmpl-")
        let created = Int(Date().timeIntervalSince1970)
        let tokenizer = engine.tokenizer
        let wantLogprobs = topLogprobs != nil
        if !stream {
            let results = try await run(streams, start: start)
            let choices = results.enumerated().map { i, r in
                let calls = Self.toolCalls(in: r.text, shape: shape, finish: r.finishReason)
                return ChatCompletionChoice(
                    index: i, message: ChatCompletionMessage(content: calls == nil ? r.text : nil, toolCalls: calls),
                    logprobs: wantLogprobs ? ChatChoiceLogprobs(content: r.logprobs.map { chatLogprob($0, tokenizer) }) : nil,
                    finishReason: calls == nil ? Self.finishReason(r.finishReason) : "tool_calls")
            }
            let usage = Usage(promptTokens: prompt.count, results: results, choicesPerPrompt: n)
            return JSONResponse.make(status: .ok, ChatCompletion(id: id, created: created, model: model.id,
                                                                 choices: choices, usage: usage))
        }

        let includeUsage = body.streamOptions?.includeUsage ?? false
        return Self.streamResponse(logger: logger, promptTokens: prompt.count) { writer in
            func chunk(_ choices: [ChatChunkChoice], usage: Usage? = nil) -> ByteBuffer {
                var c = ChatCompletionChunk(id: id, created: created, model: model.id, choices: choices, usage: usage)
                c.encodesUsage = includeUsage
                return Self.event(c)
            }
            var heldLogprobs = [[ChatTokenLogprob]](repeating: [], count: n)
            var replies = [StreamedReply](repeating: StreamedReply(shape: shape), count: n)
            let results = try await self.run(streams, start: start, first: {
                for i in 0..<n {
                    try await Self.write(
                        chunk([ChatChunkChoice(index: i, delta: ChatDelta(role: "assistant", content: ""))]), to: &writer)
                }
            }) { i, event in
                switch event {
                case .step(let step):
                    if wantLogprobs, let lp = step.logprob { heldLogprobs[i].append(self.chatLogprob(lp, tokenizer)) }
                    guard !step.text.isEmpty else { return }
                    for delta in replies[i].append(step.text) {
                        let logprobs = wantLogprobs && delta.content != nil ? ChatChoiceLogprobs(content: heldLogprobs[i]) : nil
                        if logprobs != nil { heldLogprobs[i] = [] }
                        try await Self.write(chunk([ChatChunkChoice(index: i, delta: delta, logprobs: logprobs)]), to: &writer)
                    }
                case .finished(let result):
                    let (deltas, calledTools) = replies[i].finish(result)
                    for delta in deltas {
                        try await Self.write(chunk([ChatChunkChoice(index: i, delta: delta)]), to: &writer)
                    }
                    let logprobs = wantLogprobs && !heldLogprobs[i].isEmpty ? ChatChoiceLogprobs(content: heldLogprobs[i]) : nil
                    heldLogprobs[i] = []
                    try await Self.write(
                        chunk([ChatChunkChoice(index: i, delta: ChatDelta(), logprobs: logprobs,
                                               finishReason: calledTools ? "tool_calls" : Self.finishReason(result.finishReason))]),
                        to: &writer)
                }
            }
            if includeUsage {
                let usage = Usage(promptTokens: prompt.count, results: results, choicesPerPrompt: n)
                try await Self.write(chunk([], usage: usage), to: &writer)
            }
            try await Self.write(Self.done, to: &writer)
        }
    }

    func prepareChat(_ body: ChatCompletionRequest, clientGone: @escaping @Sendable () -> Bool = { false }) throws -> PreparedChat {
        let model = try model(named: body.model)
        let (engine, service) = try model.generation()
        guard !body.messages.isEmpty else {
            throw APIError.invalidRequest("'messages' must contain at least one message.", param: "messages",
                                          code: "invalid_value")
        }
        // Every count first, before anything is built from the request.
        guard body.messages.count <= Self.maxMessages else {
            throw APIError.invalidValue("messages", "at most \(Self.maxMessages) messages are allowed.")
        }
        if let tools = body.tools, tools.count > Self.maxTools {
            throw APIError.invalidValue("tools", "at most \(Self.maxTools) tools are allowed.")
        }
        let sampling = SamplingRequest(
            temperature: body.temperature, topP: body.topP, topK: body.topK, minP: body.minP,
            repetitionPenalty: body.repetitionPenalty, presencePenalty: body.presencePenalty,
            frequencyPenalty: body.frequencyPenalty, logitBias: body.logitBias, seed: body.seed, n: body.n,
            stop: body.stop)
        try sampling.checkCounts(maxChoices: configuration.maxChoices, vocabularySize: engine.tokenizer.vocabularySize)
        if let k = body.topLogprobs, k < 0 || k > 20 {
            throw APIError.invalidValue("top_logprobs", "must be between 0 and 20.")
        }
        var messages: [ChatMessage] = []
        var texts: [String] = []
        var usesTools = false
        for (i, m) in body.messages.enumerated() {
            let role: String
            switch m.role {
            case "system", "developer": role = "system"
            case "user", "assistant", "tool": role = m.role
            default:
                throw APIError.invalidValue("messages[\(i)].role", "'\(m.role)' is not one of 'system', 'developer', 'user', 'assistant', 'tool'.")
            }
            if role == "tool" {
                usesTools = true
                guard m.toolCallID != nil else {
                    throw APIError.invalidRequest("Missing required parameter: 'messages[\(i)].tool_call_id'.",
                                                  param: "messages[\(i)].tool_call_id", code: "missing_required_parameter")
                }
            }
            if let calls = m.toolCalls, !calls.isEmpty {
                guard role == "assistant" else {
                    throw APIError.invalidValue("messages[\(i)].tool_calls", "only assistant messages carry tool calls.")
                }
                usesTools = true
                for (j, c) in calls.enumerated() where c.type != "function" {
                    throw APIError.invalidValue("messages[\(i)].tool_calls[\(j)].type", "only 'function' tool calls are supported.")
                }
            }
            let content: String
            switch m.content {
            case .text(let s): content = s
            case .parts(let parts):
                var texts: [String] = []
                for (j, part) in parts.enumerated() {
                    guard part.type == "text" else {
                        throw APIError.invalidValue("messages[\(i)].content[\(j)].type", "only 'text' content parts are supported.")
                    }
                    guard let text = part.text else {
                        throw APIError.invalidRequest("Missing required parameter: 'messages[\(i)].content[\(j)].text'.",
                                                      param: "messages[\(i)].content[\(j)].text", code: "missing_required_parameter")
                    }
                    texts.append(text)
                }
                content = texts.joined(separator: "\n")
            case nil:
                guard role == "assistant" else {
                    throw APIError.invalidRequest("Missing required parameter: 'messages[\(i)].content'.",
                                                  param: "messages[\(i)].content", code: "missing_required_parameter")
                }
                content = ""
            }
            messages.append(ChatMessage(role: role, content: content))
            texts.append(content)
        }
        let shape = try Self.replyShape(body, clientGone: clientGone)
        let prompt: [Int]
        do {
            if shape.callsTools || usesTools {
                prompt = try Self.chatPrompt(body.messages, texts: texts, shape: shape, engine: engine)
            } else {
                prompt = try engine.chatTokens(messages)
            }
        } catch let e as EngineError {
            throw APIError.from(e) ?? .internalError
        } catch {
            throw APIError.invalidValue("messages", "the chat template rejected these messages: \(error)")
        }

        let (base, n, stops) = try sampling.parameters(vocabularySize: engine.tokenizer.vocabularySize,
                                                       maxChoices: configuration.maxChoices)
        let maxParam = body.maxCompletionTokens != nil ? "max_completion_tokens" : "max_tokens"
        let maxTokens = try Self.maxTokens(
            body.maxCompletionTokens ?? body.maxTokens, param: maxParam, minimum: 1, promptCount: prompt.count,
            contextLength: model.contextLength, promptParam: "messages")
        var topLogprobs: Int?
        if body.logprobs == true {
            let k = body.topLogprobs ?? 0
            guard k >= 0 && k <= 20 else { throw APIError.invalidValue("top_logprobs", "must be between 0 and 20.") }
            topLogprobs = k
        } else if body.topLogprobs != nil {
            throw APIError.invalidRequest("'top_logprobs' requires 'logprobs' to be true.", param: "top_logprobs",
                                          code: "invalid_value")
        }
        let requests = (0..<n).map {
            GenerationRequest(promptTokens: prompt, maxTokens: maxTokens, sampling: SamplingRequest.forChoice(base, $0),
                              stop: stops, ignoreEOS: body.ignoreEOS ?? false, logprobs: topLogprobs,
                              priority: body.priority ?? 0, constraint: shape.constraint)
        }
        return PreparedChat(model: model, engine: engine, service: service, prompt: prompt, requests: requests, shape: shape,
                            topLogprobs: topLogprobs)
    }

    /// `max_tokens` checked against `minimum` and the context; absent, it is whatever the context leaves.
    public static func maxTokens(
        _ value: Int?, param: String, minimum: Int, promptCount: Int, contextLength: Int, promptParam: String
    ) throws -> Int {
        let room = contextLength - promptCount
        guard let value else {
            guard room >= max(minimum, 1) else {
                throw APIError.contextLengthExceeded(
                    "This model's maximum context length is \(contextLength) tokens, but the prompt has \(promptCount) tokens and leaves no room to generate.",
                    param: promptParam)
            }
            return room
        }
        guard value >= minimum else { throw APIError.invalidValue(param, "must be >= \(minimum).") }
        guard value <= room else {
            throw APIError.contextLengthExceeded(
                "This model's maximum context length is \(contextLength) tokens. However, you requested \(promptCount) tokens in the prompt and \(value) to generate, \(promptCount.addingReportingOverflow(value).overflow ? "more" : String(promptCount + value)) in all. Please reduce the length of the prompt or of '\(param)'.",
                param: promptParam)
        }
        return value
    }

    // MARK: POST /v1/completions

    func completion(_ body: CompletionRequest, logger: Logger, clientGone: @escaping @Sendable () -> Bool = { false })
        async throws -> Response
    {
        let start = Self.now()
        let model = try model(named: body.model)
        let (engine, service) = try model.generation()
        let tokenizer = engine.tokenizer

        // Every count first, before anything is built from the request (n times the prompts cannot overflow).
        let sampling = SamplingRequest(
            temperature: body.temperature, topP: body.topP, topK: body.topK, minP: body.minP,
            repetitionPenalty: body.repetitionPenalty, presencePenalty: body.presencePenalty,
            frequencyPenalty: body.frequencyPenalty, logitBias: body.logitBias, seed: body.seed, n: body.n,
            stop: body.stop)
        try sampling.checkCounts(maxChoices: configuration.maxChoices, vocabularySize: tokenizer.vocabularySize)
        let promptCount: Int
        switch body.prompt {
        case .texts(let texts): promptCount = texts.count
        case .tokens(let batches): promptCount = batches.count
        }
        guard promptCount * (body.n ?? 1) <= configuration.maxChoices else {
            throw APIError.invalidValue("n", "prompts times n must be at most \(configuration.maxChoices).")
        }
        if let bestOf = body.bestOf, bestOf != (body.n ?? 1) {
            throw APIError.invalidRequest("'best_of' other than 'n' is not supported.", param: "best_of",
                                          code: "unsupported_parameter")
        }
        if let k = body.logprobs, k < 0 || k > 20 {
            throw APIError.invalidValue("logprobs", "must be between 0 and 20.")
        }
        if let m = body.maxTokens, m < 0 {
            throw APIError.invalidValue("max_tokens", "must be >= 0.")
        }

        let prompts: [(text: String, tokens: [Int])]
        switch body.prompt {
        case .texts(let texts):
            prompts = texts.map { ($0, engine.encode($0)) }
        case .tokens(let batches):
            for (i, tokens) in batches.enumerated() {
                for t in tokens where t < 0 || t >= tokenizer.vocabularySize {
                    throw APIError.invalidValue("prompt", "token id \(t) in prompt \(i) is not in 0..<\(tokenizer.vocabularySize).")
                }
            }
            prompts = batches.map { (tokenizer.decode($0), $0) }
        }
        guard !prompts.isEmpty else { throw APIError.invalidValue("prompt", "must not be empty.") }
        for p in prompts where p.tokens.isEmpty {
            throw APIError.invalidValue("prompt", "a prompt is empty.")
        }
        if let suffix = body.suffix, !suffix.isEmpty {
            throw APIError.invalidRequest("'suffix' is not supported.", param: "suffix", code: "unsupported_parameter")
        }
        let (base, n, stops) = try sampling.parameters(vocabularySize: tokenizer.vocabularySize,
                                                       maxChoices: configuration.maxChoices)
        let constraint = try Self.constraint(for: body.responseFormat, clientGone: clientGone)
        var maxTokens: [Int] = []
        for p in prompts {
            maxTokens.append(try Self.maxTokens(
                body.maxTokens ?? 16, param: "max_tokens", minimum: 0, promptCount: p.tokens.count,
                contextLength: model.contextLength, promptParam: "prompt"))
        }
        let echo = body.echo ?? false
        let stream = body.stream ?? false
        if body.streamOptions != nil && !stream {
            throw APIError.invalidRequest("'stream_options' is only allowed when 'stream' is true.",
                                          param: "stream_options", code: "invalid_value")
        }
        var requests: [GenerationRequest] = []
        for (pi, p) in prompts.enumerated() {
            for c in 0..<n {
                requests.append(GenerationRequest(
                    promptTokens: p.tokens, maxTokens: maxTokens[pi],
                    sampling: SamplingRequest.forChoice(base, pi * n + c), stop: stops,
                    ignoreEOS: body.ignoreEOS ?? false, logprobs: body.logprobs,
                    promptLogprobs: echo && body.logprobs != nil, priority: body.priority ?? 0, constraint: constraint))
            }
        }
        let streams = try submit(requests, to: service)
        let promptTokenCount = prompts.reduce(0) { $0 + $1.tokens.count }
        metrics.prompt(tokens: promptTokenCount)

        let id = Self.newID("cmpl-")
        let created = Int(Date().timeIntervalSince1970)
        let wantLogprobs = body.logprobs != nil
        @Sendable func promptOf(_ choice: Int) -> (text: String, tokens: [Int]) { prompts[choice / n] }

        /// Echoed prompt logprobs: null for the first token, then each token given the ones before.
        @Sendable func echoedEntries(_ choice: Int, _ result: GenerationResult?) -> [(token: Int, lp: TokenLogprob?)] {
            let tokens = promptOf(choice).tokens
            let lps = result?.promptLogprobs ?? []
            return tokens.enumerated().map { k, t in (t, k == 0 || k - 1 >= lps.count ? nil : lps[k - 1]) }
        }

        if !stream {
            let results = try await run(streams, start: start)
            let choices = results.enumerated().map { i, r in
                let prompt = promptOf(i)
                var logprobs: CompletionLogprobs?
                if wantLogprobs {
                    var entries = echo ? echoedEntries(i, r) : []
                    entries += zip(r.tokens, r.logprobs).map { ($0, $1) }
                    logprobs = completionLogprobs(entries, offset: echo ? 0 : prompt.text.unicodeScalars.count, tokenizer)
                }
                return CompletionChoice(index: i, text: (echo ? prompt.text : "") + r.text, logprobs: logprobs,
                                        finishReason: Self.finishReason(r.finishReason))
            }
            let usage = Usage(promptTokens: promptTokenCount, results: results, choicesPerPrompt: n)
            return JSONResponse.make(status: .ok, Completion(id: id, created: created, model: model.id,
                                                             choices: choices, usage: usage))
        }

        let includeUsage = body.streamOptions?.includeUsage ?? false
        let choiceCount = requests.count
        return Self.streamResponse(logger: logger, promptTokens: promptTokenCount) { writer in
            func chunk(_ choices: [CompletionChoice], usage: Usage? = nil) -> ByteBuffer {
                var c = Completion(id: id, created: created, model: model.id, choices: choices, usage: usage)
                c.encodesUsage = includeUsage
                return Self.event(c)
            }
            // Text offsets continue across chunks of a choice.
            var offsets = (0..<choiceCount).map { echo ? 0 : promptOf($0).text.unicodeScalars.count }
            var echoed = [Bool](repeating: !echo, count: choiceCount)
            var held = [[(token: Int, lp: TokenLogprob?)]](repeating: [], count: choiceCount)

            func logprobs(_ i: Int) -> CompletionLogprobs? {
                guard wantLogprobs else { return nil }
                let lp = self.completionLogprobs(held[i], offset: offsets[i], tokenizer)
                offsets[i] += held[i].reduce(0) { $0 + self.tokenText($1.token, tokenizer).0.unicodeScalars.count }
                held[i] = []
                return lp
            }
            let results = try await self.run(streams, start: start, first: {
                // The echoed prompt goes first; its logprobs arrive with the result, so with logprobs it waits.
                guard !wantLogprobs else { return }
                for i in 0..<choiceCount where !echoed[i] {
                    echoed[i] = true
                    try await Self.write(chunk([CompletionChoice(index: i, text: promptOf(i).text, logprobs: nil,
                                                                 finishReason: nil)]), to: &writer)
                }
            }) { i, event in
                switch event {
                case .step(let step):
                    if let token = step.token, wantLogprobs { held[i].append((token, step.logprob)) }
                    // Until the echoed prompt is out, generated text waits (echo with logprobs).
                    guard echoed[i], !step.text.isEmpty else { return }
                    let lp = logprobs(i)
                    try await Self.write(chunk([CompletionChoice(index: i, text: step.text, logprobs: lp, finishReason: nil)]),
                                         to: &writer)
                case .finished(let result):
                    if !echoed[i] {
                        echoed[i] = true
                        let generated = held[i]
                        held[i] = echoedEntries(i, result)
                        let lp = logprobs(i)
                        held[i] = generated
                        try await Self.write(chunk([CompletionChoice(index: i, text: promptOf(i).text, logprobs: lp,
                                                                     finishReason: nil)]), to: &writer)
                        if !result.text.isEmpty {
                            try await Self.write(chunk([CompletionChoice(index: i, text: result.text, logprobs: logprobs(i),
                                                                         finishReason: nil)]), to: &writer)
                        }
                    }
                    let lp = wantLogprobs && !held[i].isEmpty ? logprobs(i) : nil
                    try await Self.write(chunk([CompletionChoice(index: i, text: "", logprobs: lp,
                                                                 finishReason: Self.finishReason(result.finishReason))]),
                                         to: &writer)
                }
            }
            if includeUsage {
                let usage = Usage(promptTokens: promptTokenCount, results: results, choicesPerPrompt: n)
                try await Self.write(chunk([], usage: usage), to: &writer)
            }
            try await Self.write(Self.done, to: &writer)
        }
    }
}
