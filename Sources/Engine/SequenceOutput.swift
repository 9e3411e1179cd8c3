import Tokenizer

/// The text side of one generation: end-of-generation tokens, UTF-8-safe detokenization, stop
/// strings, the token limit and logprobs. Shared by the single-sequence and the batched engine, so
/// both turn the same tokens into the same text and finish reason.
struct SequenceOutput: Sendable {
    let maxTokens: Int
    private let ignoreEOS: Bool
    private let tokenizer: Tokenizer
    private var detokenizer: StreamingDetokenizer
    private var stops: StopMatcher
    private(set) var tokens: [Int] = []
    private(set) var text = ""
    private(set) var logprobs: [TokenLogprob] = []
    /// Set once generation is over.
    private(set) var finish: FinishReason?
    private var hitStopString = false

    init(tokenizer: Tokenizer, request: GenerationRequest) {
        self.tokenizer = tokenizer
        maxTokens = request.maxTokens
        ignoreEOS = request.ignoreEOS
        detokenizer = StreamingDetokenizer(tokenizer: tokenizer)
        stops = StopMatcher(stops: request.stop)
        if request.maxTokens == 0 { finish = .length }
    }

    /// Takes a sampled token. Returns the step to stream, or nil when the token ended generation
    /// without producing output (an end-of-generation token).
    mutating func accept(_ token: Int, logprob: TokenLogprob?) -> GenerationStep? {
        precondition(finish == nil, "token after the end of generation")
        if !ignoreEOS && tokenizer.isEndOfGeneration(token) {
            finish = .stop
            return nil
        }
        tokens.append(token)
        if let logprob { logprobs.append(logprob) }
        let (delta, hitStop) = stops.feed(detokenizer.append(token))
        text += delta
        if hitStop {
            finish = .stop
            hitStopString = true
        } else if tokens.count >= maxTokens {
            finish = .length
        }
        return GenerationStep(token: token, text: delta, logprob: logprob)
    }

    /// Ends generation early (the consumer went away), unless it already ended.
    mutating func cancel() {
        if finish == nil { finish = .cancelled }
    }

    /// Text still held back at the end: a possible stop string that never completed, or an
    /// incomplete character. Empty after a stop string (the text ends before it).
    mutating func flush() -> String {
        guard !hitStopString else { return "" }
        let tail = stops.finish(detokenizer.flush())
        text += tail
        return tail
    }
}
