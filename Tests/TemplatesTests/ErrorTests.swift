import Testing
import Templates

@Suite struct ErrorTests {
    @Test func unsupportedFilterNamesTheConstruct() throws {
        let template = try Template("line one\n{{ 'x' | frobnicate }}")
        #expect(throws: TemplateError.unsupported("filter 'frobnicate'", line: 2)) { try template.render([:]) }
    }

    @Test func unsupportedTagNamesTheConstruct() {
        #expect(throws: TemplateError.unsupported("tag 'include'", line: 3)) {
            try Template("a\nb\n{% include 'other.html' %}")
        }
    }

    @Test func unsupportedTestAndFunction() throws {
        #expect(throws: TemplateError.unsupported("test 'prime'", line: 1)) { try Template("{{ 3 is prime }}").render([:]) }
        #expect(throws: TemplateError.unsupported("function 'lipsum'", line: 1)) { try Template("{{ lipsum(2) }}").render([:]) }
        #expect(throws: TemplateError.unsupported("method 'zfill' on string", line: 1)) {
            try Template("{{ 'a'.zfill(3) }}").render([:])
        }
    }

    @Test func raiseExceptionSurfacesMessage() throws {
        let template = try Template("{% if x %}{{ raise_exception('bad role: ' + x) }}{% endif %}ok")
        #expect(try template.render([:]) == "ok")
        #expect(throws: TemplateError.raised("bad role: tool")) { try template.render(["x": "tool"]) }
    }

    @Test func gemmaRejectsSystemRole() throws {
        let chat = try ChatTemplate(source: try FixtureCase.templateSource("gemma-2"), bosToken: "<bos>", eosToken: "<eos>")
        #expect(throws: TemplateError.raised("System role not supported")) {
            try chat.render(messages: [ChatMessage(role: "system", content: "s"), ChatMessage(role: "user", content: "u")],
                            addGenerationPrompt: true)
        }
    }

    @Test func syntaxErrorsAreReportedWithLines() {
        #expect(throws: TemplateError.self) { try Template("{% if x %}never closed") }
        #expect(throws: TemplateError.syntax("unexpected 'endfor'", line: 2)) { try Template("a\n{% endfor %}") }
        #expect(throws: TemplateError.self) { try Template("{{ 'unterminated }}") }
        #expect(throws: TemplateError.self) { try Template("{{ 1 + }}") }
        #expect(throws: TemplateError.self) { try Template("{# no end") }
    }

    @Test func runtimeTypeErrorsThrowInsteadOfCrashing() throws {
        #expect(throws: TemplateError.self) { try Template("{{ 'a' + 1 }}").render([:]) }
        #expect(throws: TemplateError.self) { try Template("{{ 1 // 0 }}").render([:]) }
        #expect(throws: TemplateError.self) { try Template("{{ 'a' + missing }}").render([:]) }
        #expect(throws: TemplateError.self) { try Template("{% for x in 5 %}{% endfor %}").render([:]) }
        #expect(throws: TemplateError.self) { try Template("{{ [1][::0] }}").render([:]) }
        #expect(throws: TemplateError.self) { try Template("{{ none() }}").render([:]) }
    }

    /// Numbers past Int's range take `int`'s default, as unparsable ones do (a fuzzer's find: it trapped).
    @Test func intFilterOfHugeNumbersTakesTheDefault() throws {
        #expect(try Template("{{ -0.5e93|abs|int }}|{{ 1e19|int(7) }}|{{ '9e300'|int }}|{{ 2.9|int }}|{{ -2.9|int }}").render([:])
                == "0|7|0|2|-2")
    }

    @Test func errorDescriptionIsReadable() {
        #expect(TemplateError.unsupported("filter 'xyz'", line: 3).description
            == "unsupported template construct at line 3: filter 'xyz'")
    }
}
