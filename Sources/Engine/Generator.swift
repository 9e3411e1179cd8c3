import Foundation
import GGUF
import Grammar
import Models
import Templates
import Tokenizer

/// Why generation ended.
public enum FinishReason: String, Sendable, Equatable {
    /// An end-of-generation token or a stop string.
    case stop
    /// `maxTokens` reached or the context is full.
    case length
    /// The caller asked to stop.
    case cancelled
}

public struct GenerationRequest: Sendable {
    public var promptTokens: [Int]
    public var maxTokens: Int
    public var sampling: SamplingParameters
    public var stop: [String]
    /// Generate past end-of-generation tokens (benchmarks).
    public var ignoreEOS: Bool
    /// Number of top alternatives per token to report (nil = no logprobs).
    public var logprobs: Int?
    /// Also report the log-probability of each prompt token after the first (the API's `echo` with
    /// `logprobs`), with `logprobs` alternatives.
    public var promptLogprobs: Bool
    /// Scheduling priority: higher runs first when requests compete (then arrival order).
    public var priority: Int
    /// What the output must look like (JSON Schema, tool calls); nil for free text. With a constraint,
    /// generation ends when the output is complete, whatever `ignoreEOS` says.
    public var constraint: OutputConstraint?
    /// An embedding (decoder models with last-token pooling): the prompt only, and the result's `embedding`
    /// is its last token's hidden state after the final norm (not normalised). `maxTokens` must be 0.
    public var embedding: Bool

    public init(
        promptTokens: [Int], maxTokens: Int, sampling: SamplingParameters = .init(), stop: [String] = [],
        ignoreEOS: Bool = false, logprobs: Int? = nil, promptLogprobs: Bool = false, priority: Int = 0,
        constraint: OutputConstraint? = nil, embedding: Bool = false
    ) {
        self.promptTokens = promptTokens
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.stop = stop
        self.ignoreEOS = ignoreEOS
        self.logprobs = logprobs
        self.promptLogprobs = promptLogprobs
        self.priority = priority
        self.constraint = constraint
        self.embedding = embedding
    }
}

/// One step of streamed output: the new text (possibly empty while a multi-byte character or a
/// possible stop string is held back) and the token that produced it; `token` is nil for the final
/// flush of held-back text.
public struct GenerationStep: Sendable {
    public var token: Int?
    public var text: String
    public var logprob: TokenLogprob?
}

public struct GenerationResult: Sendable {
    public var text: String
    public var tokens: [Int]
    public var finishReason: FinishReason
    public var promptTokenCount: Int
    public var logprobs: [TokenLogprob]
    /// Log-probabilities of prompt tokens 1..<n when `promptLogprobs` was asked for.
    public var promptLogprobs: [TokenLogprob] = []
    /// Prompt tokens whose keys and values came from the prefix cache instead of being computed.
    public var cachedPromptTokens = 0
    /// Seconds from start to the first generated token, and in total.
    public var timeToFirstToken: Double
    public var duration: Double
    /// An embedding request's vector (`embeddingLength` floats).
    public var embedding: [Float]? = nil

    public var decodeTokensPerSecond: Double {
        let decodeTime = duration - timeToFirstToken
        return tokens.count > 1 && decodeTime > 0 ? Double(tokens.count - 1) / decodeTime : 0
    }
}

/// The model's parameters and weight type (see `Models.ModelFacts`), for layers above the engine.
public typealias ModelFacts = Models.ModelFacts

/// A loaded model with its tokenizer and chat template; runs one generation at a time (callers queue).
public final class InferenceEngine: @unchecked Sendable {
    public let gguf: GGUFFile
    public let model: any LanguageModel
    public let tokenizer: Tokenizer
    public let chatTemplate: ChatTemplate?
    public let modelName: String
    public let contextLength: Int
    /// Parameters (total and active), experts and weight type, for the console and the gateway.
    public let facts: ModelFacts
    /// How the file says to pool hidden states into an embedding (`<arch>.pooling_type`: embedding models
    /// such as Qwen3-Embedding); nil for plain language models.
    public let pooling: Pooling?
    /// Matryoshka embedding models: the fewest dimensions a request may ask for.
    public let minimumDimensions: Int?
    private let lock = NSLock()
    private let grammars: GrammarMatcherCache

    /// Loads a GGUF file. `contextLength` caps the KV cache (default: the model's, at most 8192).
    public init(path: String, threads: Int? = nil, contextLength: Int? = nil, minimumDimensions: Int? = nil) throws {
        gguf = try GGUFFile(path: path)
        model = try ModelRegistry.load(gguf, threads: threads ?? ThreadPoolDefaults.threads)
        facts = ModelFacts(gguf: gguf, config: model.config)
        let arch = model.config.architecture
        if let type = try gguf.int("\(arch).pooling_type"), type != 0 {
            guard let p = Pooling(rawValue: type) else {
                throw ModelError.invalidHyperparameter("\(arch).pooling_type", "\(type) (supported: 1 mean, 2 cls, 3 last)")
            }
            pooling = p
        } else {
            pooling = nil
        }
        let width = model.config.embeddingLength
        self.minimumDimensions = minimumDimensions.map { min(max($0, 1), width) }
        let tokenizer = try Tokenizer(gguf: gguf)
        self.tokenizer = tokenizer
        let ctx = contextLength ?? min(model.config.contextLength, 8192)
        guard ctx > 0 else { throw EngineError.invalidParameter("context_length", "must be > 0") }
        self.contextLength = min(ctx, model.config.contextLength)
        if let source = try gguf.string("tokenizer.chat_template")
            ?? BuiltinTemplates.source(forArchitecture: model.config.architecture) {
            let bos = tokenizer.bosToken.map { tokenizer.tokenText($0) } ?? ""
            let eos = tokenizer.eosToken.map { tokenizer.tokenText($0) } ?? ""
            chatTemplate = try ChatTemplate(source: source, bosToken: bos, eosToken: eos)
        } else {
            chatTemplate = nil
        }
        modelName = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        grammars = GrammarMatcherCache { TokenVocabulary(tokenizer: tokenizer) }
    }

    /// The matcher for `constraint` on this model's vocabulary: shared by requests with the same
    /// grammar, with its automaton states and token masks cached.
    public func matcher(for constraint: OutputConstraint) -> GrammarMatcher {
        grammars.matcher(for: constraint.grammar)
    }

    /// The text side of a new generation of `request`, with its grammar state if it has a constraint.
    func makeOutput(_ request: GenerationRequest) -> SequenceOutput {
        SequenceOutput(tokenizer: tokenizer, request: request,
                       grammar: request.constraint.map { GrammarState(matcher: matcher(for: $0)) })
    }

    /// Renders messages with the model's chat template.
    public func renderChat(_ messages: [ChatMessage], addGenerationPrompt: Bool = true) throws -> String {
        guard let chatTemplate else { throw EngineError.noChatTemplate }
        return try chatTemplate.render(messages: messages, addGenerationPrompt: addGenerationPrompt)
    }

    /// Tokens of a chat conversation as the model sees it (special tokens parsed).
    public func chatTokens(_ messages: [ChatMessage]) throws -> [Int] {
        let text = try renderChat(messages)
        return tokenizer.encode(text, addSpecial: true, parseSpecial: true)
    }

    /// Tokens of a chat given as template values (messages with `tool_calls`, tool results), with
    /// `extra` context such as `tools`.
    public func chatTokens(_ messages: [JinjaValue], extra: [String: JinjaValue]) throws -> [Int] {
        guard let chatTemplate else { throw EngineError.noChatTemplate }
        let text = try chatTemplate.render(messages: messages, addGenerationPrompt: true, extra: extra)
        return tokenizer.encode(text, addSpecial: true, parseSpecial: true)
    }

    public func encode(_ text: String) -> [Int] { tokenizer.encode(text, addSpecial: true, parseSpecial: false) }

    /// Checks a request without running it: what `generate` would reject, it rejects with the same error.
    public func validate(_ request: GenerationRequest) throws {
        let prompt = request.promptTokens
        guard !prompt.isEmpty else { throw EngineError.emptyPrompt }
        guard request.maxTokens >= 0 else { throw EngineError.invalidParameter("max_tokens", "must be >= 0") }
        guard prompt.count <= contextLength, request.maxTokens <= contextLength - prompt.count else {
            throw EngineError.contextLengthExceeded(
                promptTokens: prompt.count, maxTokens: request.maxTokens, contextLength: contextLength)
        }
        if let n = request.logprobs, n < 0 { throw EngineError.invalidParameter("logprobs", "must be >= 0") }
        if request.embedding, request.maxTokens != 0 || request.promptLogprobs {
            throw EngineError.invalidParameter("embedding", "an embedding request generates nothing (max_tokens 0, no prompt logprobs)")
        }
        let vocab = model.config.vocabularySize
        try request.sampling.validate(vocabularySize: vocab)
        for t in prompt where t < 0 || t >= vocab {
            throw EngineError.invalidParameter("prompt", "token id \(t) out of range [0, \(vocab))")
        }
    }

    /// Runs a generation; `onStep` sees each token's text as it comes and returns false to cancel.
    public func generate(
        _ request: GenerationRequest, onStep: (GenerationStep) -> Bool = { _ in true }
    ) throws -> GenerationResult {
        try validate(request)
        let prompt = request.promptTokens
        let vocab = model.config.vocabularySize

        lock.lock()
        defer { lock.unlock() }
        let start = DispatchTime.now().uptimeNanoseconds
        func elapsed() -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }

        let cache = model.makeCache(capacity: prompt.count + request.maxTokens)
        var logits: [Float] = []
        var sampler = Sampler(parameters: request.sampling)
        let scratch = SamplerScratch(vocabularySize: vocab)
        var context = prompt
        var out = makeOutput(request)
        var ttft = 0.0

        var promptLogprobs: [TokenLogprob] = []
        if request.promptLogprobs {
            let rows = try model.forward(tokens: prompt, cache: cache, logits: .all, into: &logits)
            logits.withUnsafeBufferPointer { all in
                for i in 0..<(rows - 1) {
                    promptLogprobs.append(TokenLogprob.compute(
                        UnsafeBufferPointer(rebasing: all[i * vocab..<(i + 1) * vocab]), token: prompt[i + 1],
                        topN: request.logprobs ?? 0))
                }
            }
            // The last row holds the next-token logits; sampling reads the first row.
            if rows > 1 { logits.replaceSubrange(0..<vocab, with: logits[(rows - 1) * vocab..<rows * vocab]) }
        } else if out.finish == nil {
            try model.forward(tokens: prompt, cache: cache, logits: .last, into: &logits)
        }
        while out.finish == nil {
            let token = logits.withUnsafeMutableBufferPointer { buf in
                let row = UnsafeMutableBufferPointer(rebasing: buf[0..<vocab])
                sampler.applyPenalties(row, context: context[...])
                out.constrain(row)
                return sampler.sample(UnsafeBufferPointer(row), scratch: scratch)
            }
            var lp: TokenLogprob?
            if let n = request.logprobs {
                lp = logits.withUnsafeBufferPointer {
                    TokenLogprob.compute(UnsafeBufferPointer(rebasing: $0[0..<vocab]), token: token, topN: n)
                }
            }
            if out.tokens.isEmpty { ttft = elapsed() }
            guard let step = out.accept(token, logprob: lp) else { break }
            sampler.accept(token)
            context.append(token)
            if !onStep(step) { out.cancel() }
            if out.finish != nil { break }
            try model.forward(tokens: [token], cache: cache, logits: .last, into: &logits)
        }
        let tail = out.flush()
        if !tail.isEmpty && out.finish != .cancelled { _ = onStep(GenerationStep(token: nil, text: tail, logprob: nil)) }
        return GenerationResult(
            text: out.text, tokens: out.tokens, finishReason: out.finish ?? .length, promptTokenCount: prompt.count,
            logprobs: out.logprobs, promptLogprobs: promptLogprobs, timeToFirstToken: ttft, duration: elapsed())
    }

    /// Logits for every position of `tokens` (rows of vocabulary size). For evaluation and tests.
    public func logits(for tokens: [Int]) throws -> [Float] {
        lock.lock()
        defer { lock.unlock() }
        let cache = model.makeCache(capacity: tokens.count)
        var out: [Float] = []
        try model.forward(tokens: tokens, cache: cache, logits: .all, into: &out)
        return out
    }

    /// Perplexity of `tokens`: exp of the mean negative log-likelihood of each token after the first.
    public func perplexity(of tokens: [Int]) throws -> Double {
        let v = model.config.vocabularySize
        let all = try logits(for: tokens)
        var nll = 0.0
        for i in 0..<(tokens.count - 1) {
            let lp = all.withUnsafeBufferPointer {
                TokenLogprob.compute(UnsafeBufferPointer(rebasing: $0[i * v..<(i + 1) * v]), token: tokens[i + 1], topN: 0)
            }
            nll -= Double(lp.logprob)
        }
        return exp(nll / Double(tokens.count - 1))
    }
}

public enum ThreadPoolDefaults {
    /// Worker threads: SWIFTLET_THREADS or the number of online cores.
    public static var threads: Int {
        if let s = ProcessInfo.processInfo.environment["SWIFTLET_THREADS"], let n = Int(s), n > 0 { return n }
        return ProcessInfo.processInfo.activeProcessorCount
    }
}

/// Finds stop strings in streamed text, holding back any suffix that might begin one.
public struct StopMatcher: Sendable {
    let stops: [String]
    private var pending = ""

    public init(stops: [String]) { self.stops = stops.filter { !$0.isEmpty } }

    /// Feeds new text; returns the text safe to emit and whether a stop string was found
    /// (the returned text then ends just before it).
    public mutating func feed(_ text: String) -> (String, Bool) {
        guard !stops.isEmpty else { return (text, false) }
        pending += text
        var earliest: String.Index?
        for s in stops {
            if let r = pending.range(of: s), earliest == nil || r.lowerBound < earliest! { earliest = r.lowerBound }
        }
        if let e = earliest {
            let out = String(pending[..<e])
            pending = ""
            return (out, true)
        }
        // Hold back the longest suffix that is a prefix of some stop string.
        var hold = 0
        for s in stops {
            let maxLen = min(s.count - 1, pending.count)
            if maxLen <= hold { continue }
            for len in stride(from: maxLen, to: hold, by: -1) where pending.hasSuffix(s.prefix(len)) {
                hold = len
                break
            }
        }
        let cut = pending.index(pending.endIndex, offsetBy: -hold)
        let out = String(pending[..<cut])
        pending = String(pending[cut...])
        return (out, false)
    }

    /// Releases held-back text at the end of generation.
    public mutating func finish(_ text: String) -> String {
        let (out, hit) = feed(text)
        if hit { return out }
        defer { pending = "" }
        return out + pending
    }
}
