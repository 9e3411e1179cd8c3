import Foundation
import Testing
import Templates

/// One rendering produced by `scripts/fixtures/render_templates.py` with Python jinja2.
struct FixtureCase: Sendable, CustomTestStringConvertible {
    var name: String
    var template: String
    var bosToken: String
    var eosToken: String
    var addGenerationPrompt: Bool
    var messages: [JinjaValue]
    var extra: [String: JinjaValue]
    var expected: String?
    var error: String?

    var testDescription: String { name }

    static let fixturesURL = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

    /// The date the Python script's `strftime_now` formats: 26 Jul 2024, noon local time.
    static let fixedDate = Calendar(identifier: .gregorian).date(
        from: DateComponents(timeZone: .current, year: 2024, month: 7, day: 26, hour: 12))!

    static func templateSource(_ name: String) throws -> String {
        try String(contentsOf: fixturesURL.appendingPathComponent("templates/\(name).jinja"), encoding: .utf8)
    }

    static let all: [FixtureCase] = {
        let data = try! Data(contentsOf: fixturesURL.appendingPathComponent("expected.json"))
        guard case .array(let items) = try! JinjaValue(json: String(decoding: data, as: UTF8.self)) else { return [] }
        return items.map { item in
            guard case .object(let o) = item, case .array(let messages)? = o["messages"],
                case .object(let extra)? = o["extra"]
            else { fatalError("bad fixture") }
            return FixtureCase(
                name: o["name"]!.stringValue, template: o["template"]!.stringValue,
                bosToken: o["bos_token"]!.stringValue, eosToken: o["eos_token"]!.stringValue,
                addGenerationPrompt: o["add_generation_prompt"] == .bool(true), messages: messages,
                extra: Dictionary(uniqueKeysWithValues: extra.map { ($0.key, $0.value) }),
                expected: o["expected"].map(\.stringValue), error: o["error"].map(\.stringValue))
        }
    }()
}

@Suite struct ChatTemplateFixtureTests {
    @Test func fixturesAreLoaded() {
        #expect(FixtureCase.all.count > 50)
        let models = Set(FixtureCase.all.map(\.template))
        #expect(models == ["smollm2", "llama-3.1", "llama-3.2", "qwen2.5", "mistral-nemo", "gemma-2", "gemma-3", "phi-3"])
    }

    /// The built-in template for files without one is the fixture jinja2 rendered, byte for byte
    /// (the multi-line literal ends without the file's last newline).
    @Test func builtinGemma3IsTheRenderedFixture() throws {
        #expect(BuiltinTemplates.gemma3 + "\n" == (try FixtureCase.templateSource("gemma-3")))
        #expect(BuiltinTemplates.source(forArchitecture: "gemma3") != nil)
        #expect(BuiltinTemplates.source(forArchitecture: "llama") == nil)
    }

    @Test(arguments: FixtureCase.all)
    func rendersLikeJinja2(_ fixture: FixtureCase) throws {
        let template = try ChatTemplate(source: try FixtureCase.templateSource(fixture.template),
                                        bosToken: fixture.bosToken, eosToken: fixture.eosToken)
        let render = {
            try template.render(messages: fixture.messages, addGenerationPrompt: fixture.addGenerationPrompt,
                                extra: fixture.extra, now: FixtureCase.fixedDate)
        }
        if let expected = fixture.expected {
            #expect(try render() == expected)
        } else {
            #expect(throws: TemplateError.raised(fixture.error!)) { try render() }
        }
    }

    @Test func chatMessageAPI() throws {
        let template = try ChatTemplate(source: try FixtureCase.templateSource("smollm2"), bosToken: "", eosToken: "")
        let text = try template.render(messages: [ChatMessage(role: "user", content: "Hi")], addGenerationPrompt: true)
        #expect(text == "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    }

    @Test func llama32UsesStrftimeNow() throws {
        let template = try ChatTemplate(source: try FixtureCase.templateSource("llama-3.2"),
                                        bosToken: "<|begin_of_text|>", eosToken: "<|eot_id|>")
        let date = Calendar(identifier: .gregorian).date(
            from: DateComponents(timeZone: .current, year: 2025, month: 3, day: 5, hour: 9))!
        let text = try template.render(messages: [ChatMessage(role: "user", content: "Hi")], addGenerationPrompt: true,
                                       now: date)
        #expect(text.contains("Today Date: 05 Mar 2025\n"))
    }

    @Test func templateIsReusableAcrossRenders() throws {
        let template = try ChatTemplate(source: try FixtureCase.templateSource("qwen2.5"), bosToken: "", eosToken: "<|im_end|>")
        for i in 0..<3 {
            let text = try template.render(messages: [ChatMessage(role: "user", content: "n\(i)")], addGenerationPrompt: false)
            #expect(text.hasSuffix("<|im_start|>user\nn\(i)<|im_end|>\n"))
        }
    }
}
