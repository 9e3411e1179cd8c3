import FuzzSupport
import Grammar

// The JSON Schema compiler and its regex subset. The first byte chooses what the rest is:
//   even: a JSON Schema (JSON text); odd: a regex, used as {"type": "string", "pattern": ...};
//   bit 1: compile with the free-text alternative (as for tool calls).
// After a NUL byte comes a text to read. Compiling throws SchemaError or builds a grammar; then
// `accepts` implies `acceptsPrefix`, and the token mask over a small vocabulary agrees with the
// byte-level cursor (the reference the masks are tested against) at each state along the text.

let pieces = ["{", "}", "\"", "\"a", "a", "b", "0", "1", "9", ":", ",", " ", "\n", "12", "\"}", "{\"", "true", "false",
              "null", "\":", "\",\"", "[", "]", "[\"", "\"]", "-", ".", "e", "E", "+", "\\", "\\\"", "\\u", "x", "Z", "T",
              "é", "]}", "}}", "\":\"", "\u{1}", "\t", "/", "@", "_", "ab", "abc", "2024-01-01"]
let vocabulary: TokenVocabulary = {
    var tokens = pieces.map { Array($0.utf8) }
    tokens += [[0xC3], [0xA9], [0xE6, 0x97], [0xA5], [0xFF], [0xF0, 0x9F]]
    tokens.append([])  // end of generation
    return TokenVocabulary(tokens: tokens, endOfGeneration: [tokens.count - 1])
}()
let eog = vocabulary.size - 1

func checkMask(_ state: GrammarState, _ cursor: GrammarCursor) {
    let mask = state.mask()
    for t in 0..<vocabulary.size {
        var c = cursor
        let expected = t == eog ? cursor.isAccepting : c.advance(vocabulary.tokenBytes[t])
        check(mask.allows(t) == expected, "mask and cursor disagree on token \(t) (state \(state.id))")
    }
}

runFuzzer { input in
    guard let mode = input.first else { return }
    let parts = split(UnsafeRawBufferPointer(rebasing: input.dropFirst()), separator: [0])
    let schema: JSONValue
    if mode & 1 == 0 {
        guard let s = try? JSONValue.parse(parts[0]) else { return }
        schema = s
    } else {
        schema = .object([("type", .string("string")), ("pattern", .string(String(decoding: parts[0], as: UTF8.self)))])
    }
    let compiled = mode & 2 == 0 ? try? Grammar.jsonSchema(schema) : try? Grammar.jsonSchemaOrText(schema)
    guard let grammar = compiled else { return }
    let text = parts.count > 1 ? parts[1] : []
    if let s = String(validating: text, as: UTF8.self), grammar.accepts(s) {
        check(grammar.acceptsPrefix(s), "accepted text is not an accepted prefix")
    }
    // Along the text, token by token (longest vocabulary piece first): the matcher and the cursor
    // move alike; the mask is checked against the cursor at the start and where the walk ends (the
    // check reads every token through the cursor, the costly part of a run).
    let matcher = GrammarMatcher(grammar: grammar, vocabulary: vocabulary)
    var state = GrammarState(matcher: matcher)
    var cursor = GrammarCursor(grammar)
    checkMask(state, cursor)
    var i = 0, steps = 0
    while steps < 16, i < text.count {
        let token = (0..<eog).filter { t in
            let b = vocabulary.tokenBytes[t]
            return i + b.count <= text.count && Array(text[i..<(i + b.count)]) == b
        }.max { vocabulary.tokenBytes[$0].count < vocabulary.tokenBytes[$1].count }
        guard let token else { break }
        var next = cursor  // a cursor that fails to read is dead; the state does not move
        let moved = state.advance(token: token), read = next.advance(vocabulary.tokenBytes[token])
        check(moved == read, "matcher and cursor disagree on reading token \(token)")
        if !moved { break }
        cursor = next
        i += vocabulary.tokenBytes[token].count
        steps += 1
    }
    if steps > 0 { checkMask(state, cursor) }
}
