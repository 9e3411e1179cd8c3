import Grammar
import Tokenizer

/// The text side of one generation: end-of-generation tokens, UTF-8-safe detokenization, stop
/// strings, the token limit, logprobs and the output grammar. Shared by the single-sequence and the
/// batched engine, so both turn the same tokens into the same text and finish reason.
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
    /// Where the output is in its grammar (nil: unconstrained). Kept across preemption with the rest.
    private(set) var grammar: GrammarState?

    init(tokenizer: Tokenizer, request: GenerationRequest, grammar: GrammarState? = nil) {
        self.grammar = grammar
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
        if (!ignoreEOS || grammar != nil) && tokenizer.isEndOfGeneration(token) {
            finish = .stop
            return nil
        }
        if grammar != nil, !grammar!.isFree, !grammar!.advance(token: token) {
            // Only when the mask allowed nothing at all (a vocabulary that cannot spell what must follow).
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
        } else if grammar?.isComplete == true {
            finish = .stop
        } else if tokens.count >= maxTokens {
            finish = .length
        }
        return GenerationStep(token: token, text: delta, logprob: logprob)
    }

    /// Gives the tokens the grammar does not allow next -infinity (nothing to do without a grammar or in
    /// free text).
    func constrain(_ logits: UnsafeMutableBufferPointer<Float>) {
        guard let grammar, !grammar.isFree else { return }
        grammar.mask().apply(to: logits)
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
