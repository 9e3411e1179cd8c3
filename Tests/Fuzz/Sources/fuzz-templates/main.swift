import Foundation
import FuzzSupport
import Templates

// The Jinja interpreter on arbitrary templates and messages. The input is up to three parts separated
// by NUL bytes: the template source, the messages as JSON (any value; an array is used as
// `messages`, anything else becomes one user message's content) and `tools` as JSON. Parsing and
// rendering either throw or return; JSON values read by the template layer survive a round trip
// through its writer (except infinities: like Python, a number too large becomes one, and is written
// as `Infinity`, which JSON parsers, this one included, do not read back).

let now = Date(timeIntervalSince1970: 1_700_000_000)
let defaultMessages: [JinjaValue] = [
    ["role": "system", "content": "You are helpful."],
    ["role": "user", "content": "Hi <|im_start|> {{ x }}"],
    ["role": "assistant", "content": "Hello", "tool_calls": [["type": "function", "function": ["name": "f", "arguments": ["a": 1]]]]],
    ["role": "tool", "content": "42", "tool_call_id": "c1"],
]

func finite(_ v: JinjaValue) -> Bool {
    switch v {
    case .double(let d): d.isFinite
    case .array(let a): a.allSatisfy(finite)
    case .object(let o): o.values.allSatisfy(finite)
    default: true
    }
}

func json(_ bytes: [UInt8]) -> JinjaValue? {
    guard let s = String(validating: bytes, as: UTF8.self), let v = try? JinjaValue(json: s) else { return nil }
    if finite(v) { check((try? JinjaValue(json: v.jsonString)) == v, "JSON round trip changed \(s)") }
    return v
}

runFuzzer { input in
    let parts = split(input, separator: [0])
    guard let source = String(validating: parts[0], as: UTF8.self) else { return }
    var messages = defaultMessages
    if parts.count > 1 {
        switch json(parts[1]) {
        case .array(let a)?: messages = a
        case let v?: messages.append(["role": "user", "content": v])
        case nil: messages.append(["role": "user", "content": .string(String(decoding: parts[1], as: UTF8.self))])
        }
    }
    var extra: [String: JinjaValue] = [:]
    if parts.count > 2, let tools = json(parts[2]) { extra["tools"] = tools }
    guard let template = try? ChatTemplate(source: source, bosToken: "<s>", eosToken: "</s>") else { return }
    for generation in [false, true] {
        _ = try? template.render(messages: messages, addGenerationPrompt: generation, extra: extra, now: now)
    }
}
