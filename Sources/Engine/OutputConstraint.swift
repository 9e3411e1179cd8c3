import Foundation
import Grammar

/// What a generation's output must look like: a compiled grammar. Before each token is sampled, the
/// tokens whose text cannot continue a valid output get -infinity (after penalties and bias, so
/// logprobs are those of the constrained distribution); end-of-generation tokens are allowed only
/// where the output is complete, and generation stops as soon as nothing else can follow.
public struct OutputConstraint: Sendable {
    public let grammar: Grammar

    public init(grammar: Grammar) { self.grammar = grammar }

    /// One JSON value valid against `schema`.
    public static func jsonSchema(_ schema: JSONValue) throws(SchemaError) -> OutputConstraint {
        OutputConstraint(grammar: try Grammar.jsonSchema(schema))
    }

    /// Any JSON object.
    public static let jsonObject = OutputConstraint(grammar: Grammar.jsonObject())
}

/// Matchers of recently used grammars for one model, so that requests with the same schema share
/// their automaton and cached masks. Least recently used ones go first; one grown past `maxStates`
/// is not handed out again (sequences still using it keep it).
final class GrammarMatcherCache: @unchecked Sendable {
    // @unchecked: `entries` and `vocabulary` are guarded by `lock`.
    private let lock = NSLock()
    private let tokenizerVocabulary: @Sendable () -> TokenVocabulary
    private var vocabulary: TokenVocabulary?
    private var entries: [(key: String, matcher: GrammarMatcher)] = []
    let capacity: Int
    let maxStates: Int

    init(capacity: Int = 16, maxStates: Int = 10_000, vocabulary: @escaping @Sendable () -> TokenVocabulary) {
        self.capacity = capacity
        self.maxStates = maxStates
        tokenizerVocabulary = vocabulary
    }

    func matcher(for grammar: Grammar) -> GrammarMatcher {
        lock.lock()
        defer { lock.unlock() }
        if let i = entries.firstIndex(where: { $0.key == grammar.key }) {
            let entry = entries.remove(at: i)
            if entry.matcher.stateCount <= maxStates {
                entries.append(entry)
                return entry.matcher
            }
        }
        let v = vocabulary ?? tokenizerVocabulary()
        vocabulary = v
        let m = GrammarMatcher(grammar: grammar, vocabulary: v)
        entries.append((grammar.key, m))
        if entries.count > capacity { entries.removeFirst() }
        return m
    }
}
