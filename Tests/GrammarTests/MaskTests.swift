import Engine
import Grammar
import SwiftletTesting
import Testing

/// Token masks (trie walk over the lazily built DFA, cached per state) against a brute-force reference:
/// a token is allowed exactly when the grammar can read its bytes after the output so far, and an
/// end-of-generation token exactly when the output may end.
@Suite(.serialized) struct MaskTests {
    static let schemas = [
        #"{"type": "object", "properties": {"name": {"type": "string", "maxLength": 6}, "age": {"type": "integer", "minimum": 0, "maximum": 130},"#
            + #" "tags": {"type": "array", "items": {"enum": ["a", "bc"]}, "minItems": 1, "maxItems": 3}, "ok": {"type": "boolean"}},"#
            + #" "required": ["name", "age", "tags"], "additionalProperties": false}"#,
        #"{"anyOf": [{"type": "string", "pattern": "^[a-c]{2}\\d$"}, {"type": "number"}, {"type": "null"}]}"#,
        #"{"type": "object"}"#,
    ]

    /// Walks random allowed tokens from the start, checking the mask at every state on the way.
    func walk(_ matcher: GrammarMatcher, steps: Int, seed: UInt64, checkEvery: Int = 1) {
        var rng = SeededGenerator(seed: seed)
        var state = GrammarState(matcher: matcher)
        var cursor = GrammarCursor(matcher.grammar)
        let v = matcher.vocabulary
        let eog = Set(v.endOfGeneration.map(Int.init))
        for step in 0..<steps {
            let mask = state.mask()
            if step % checkEvery == 0 {
                var mismatches: [Int] = []
                for t in 0..<v.size {
                    let expected: Bool
                    if eog.contains(t) {
                        expected = cursor.isAccepting
                    } else if v.tokenBytes[t].isEmpty {
                        expected = false
                    } else {
                        var c = cursor
                        expected = c.advance(v.tokenBytes[t])
                    }
                    if mask.allows(t) != expected { mismatches.append(t) }
                }
                #expect(mismatches.isEmpty, "state \(state.id) after step \(step): tokens \(mismatches.prefix(10)) differ")
                #expect(mask.allowedCount == (0..<v.size).filter { mask.allows($0) }.count)
                // Applying the mask leaves exactly the allowed tokens finite.
                var logits = (0..<(v.size + 3)).map { Float($0 % 7) }
                logits.withUnsafeMutableBufferPointer { mask.apply(to: $0) }
                #expect((0..<logits.count).allSatisfy { logits[$0].isFinite == mask.allows($0) })
            }
            let allowed = (0..<v.size).filter { mask.allows($0) && !eog.contains($0) }
            if allowed.isEmpty || state.isComplete { break }
            let token = allowed[Int(rng.next() % UInt64(allowed.count))]
            let moved = state.advance(token: token), read = cursor.advance(v.tokenBytes[token])
            #expect(moved && read)
        }
    }

    @Test func smallVocabularyMatchesBruteForce() throws {
        let pieces = ["{", "}", "\"", "\"a", "a", "b", "c", "ab\"", ":", ",", " ", "\n", "1", "12", "\"}", "{\"", "true",
                      "false", "null", "name", "age", "tags", "ok", "\":", "\",\"", "[", "]", "[\"", "\"]", "bc", "-", "0", ".",
                      "e", "5", "\\", "\\\"", "x", "\u{1}", "é", "]}", "}}", "\":\"", "ok\":", "a1", "ca2"]
        var tokens = pieces.map { Array($0.utf8) }
        tokens += [[0xC3], [0xA9], [0xE6, 0x97], [0xA5], [0xFF]]
        tokens.append([])  // end of generation
        let v = TokenVocabulary(tokens: tokens, endOfGeneration: [tokens.count - 1])
        for (i, s) in Self.schemas.enumerated() {
            let matcher = GrammarMatcher(grammar: try grammar(s), vocabulary: v)
            for seed in 0..<12 { walk(matcher, steps: 40, seed: UInt64(i * 100 + seed)) }
        }
    }

    @Test func realVocabularyMatchesBruteForce() throws {
        guard let e = try engineOrSkip() else { return }
        let v = TokenVocabulary(tokenizer: e.tokenizer)
        #expect(v.size == e.tokenizer.vocabularySize)
        for (i, s) in Self.schemas.enumerated() {
            let matcher = GrammarMatcher(grammar: try grammar(s), vocabulary: v)
            walk(matcher, steps: 12, seed: UInt64(i), checkEvery: 3)
        }
    }

    @Test func masksAreCachedPerState() throws {
        let v = TokenVocabulary(tokens: ["{", "}", "\"a\"", ":", "1"].map { Array($0.utf8) } + [[]], endOfGeneration: [5])
        let matcher = GrammarMatcher(grammar: Grammar.jsonObject(), vocabulary: v)
        var s = GrammarState(matcher: matcher)
        _ = s.mask()
        _ = s.mask()
        #expect(matcher.statistics.masksComputed == 1 && matcher.statistics.maskLookups == 2)
        #expect(s.advance(token: 0) && s.advance(token: 1))
        #expect(s.isAccepting && s.isComplete)
        #expect(s.mask().allows(5) && s.mask().allowedCount == 1)
        let movedPastEnd = s.advance(token: 1)
        #expect(!movedPastEnd)
    }
}

func engineOrSkip() throws -> InferenceEngine? {
    if TestModel.skipped { return nil }
    return try TestModel.engine()
}
