import Templates
import Testing

/// Hostile templates (found by fuzzing, Tests/Fuzz) end in a TemplateError instead of overflowing the
/// stack, allocating gigabytes or running for minutes; ordinary templates are far from the bounds.
@Suite struct LimitTests {
    func expectError(_ source: String, _ context: [String: JinjaValue] = [:], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(throws: TemplateError.self, sourceLocation: sourceLocation) { try Template(source).render(context) }
    }

    @Test func deepNestingIsASyntaxError() throws {
        let parens = String(repeating: "(", count: 5000) + "1" + String(repeating: ")", count: 5000)
        expectError("{{ \(parens) }}")
        expectError("{{ " + String(repeating: "not ", count: 5000) + "x }}")
        expectError("{{ 1" + String(repeating: " + 1", count: 5000) + " }}")
        expectError("{{ x" + String(repeating: "|trim", count: 5000) + " }}")
        expectError("{{ x" + String(repeating: ".a", count: 5000) + " }}")
        expectError(String(repeating: "{% if 1 %}", count: 3000) + String(repeating: "{% endif %}", count: 3000))
        // Within the bound: fine.
        let fifty = String(repeating: "(", count: 50) + "1" + String(repeating: ")", count: 50)
        #expect(try Template("{{ \(fifty) }}").render([:]) == "1")
    }

    @Test func recursiveMacroStops() throws {
        expectError("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}")
        #expect(try Template("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ n }}{% endif %}{% endmacro %}{{ f(5) }}")
            .render([:]) == "12345")
    }

    @Test func hugeValuesAreRefusedBeforeAllocation() throws {
        expectError("{{ 'a' * 10000000000 }}")
        expectError("{{ [1, 2] * 1000000000 }}")
        expectError("{{ range(100000000)|length }}")
        expectError("{{ 'x'|center(9999999999) }}")
        expectError("{{ 'a\na\na'|indent(9999999999) }}")
        expectError("{{ {'a': 1}|tojson(indent=100000) }}")
        expectError("{% set ns = namespace(s='aaaa') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}")
        expectError("{% set ns = namespace(s='aaaaaaaa') %}{% for i in range(20) %}{% set ns.s = ns.s.replace('a', 'aaaaaaaa') %}{% endfor %}")
        #expect(try Template("{{ 'ab' * 3 }}{{ range(3)|list }}{{ 'x'|center(5) }}").render([:]) == "ababab[0, 1, 2]  x  ")
    }

    @Test func negativeWidthsDoNotCrash() throws {
        #expect(try Template("{{ 'a\nb'|indent(-3) }}").render([:]) == "a\nb")
        #expect(try Template("{{ [1]|tojson(indent=-2) }}").render([:]) == "[\n1\n]")
    }

    @Test func endlessWorkStops() throws {
        expectError("{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}{% endfor %}{% endfor %}{% endfor %}")
    }

    @Test func deeplyNestedValuesAreRefused() throws {
        expectError("{% set ns = namespace(x=1) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}")
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: TemplateError.self) { try JinjaValue(json: deep) }
    }
}
