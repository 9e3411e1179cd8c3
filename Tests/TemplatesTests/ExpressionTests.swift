import Foundation
import Testing
import Templates

/// Expression and statement semantics; expected strings were produced by Python jinja2 3.1.6 with
/// trim_blocks=True, lstrip_blocks=True (and the loopcontrols extension for break/continue).
@Suite struct ExpressionTests {
    static let context: [String: JinjaValue] = {
        guard case .object(let o) = try! JinjaValue(json: #"{"items": [3, 1, 2], "user": {"name": "Ann", "tags": ["a", "b"]}, "msgs": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}, {"role": "user", "content": "bye"}], "s": "  Hello World  ", "n": null, "flag": true, "d": {"b": 1, "a": [1, 2.5, null, true, "x"]}}"#) else { return [:] }
        return Dictionary(uniqueKeysWithValues: o.map { ($0.key, $0.value) })
    }()

    static let cases: [(String, String)] = [
        ("{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ -7 % 3 }}|{{ 7 / 2 }}|{{ 2 ** 10 }}|{{ 1.5 + 1 }}",
         "7|9|3|-4|1|2|3.5|1024|2.5"),
        ("{{ 'a' ~ 1 ~ none ~ true }}|{{ 'ab' * 2 }}|{{ [1] + [2] }}|{{ \"q\\\"uote\" }}|{{ 'tab\\there' }}|{{ 'uni\\u00e9' }}",
         "a1NoneTrue|abab|[1, 2]|q\"uote|tab\there|unié"),
        ("{{ items[0] }}{{ items[-1] }}{{ items[1:] }}{{ items[::-1] }}{{ items[:2] }}{{ 'hello'[1:3] }}{{ 'hello'[::-1] }}{{ items[10] }}",
         "32[1, 2][2, 1, 3][3, 1]elolleh"),
        ("{{ user.name }}{{ user['name'] }}{{ user.tags[1] }}{{ user.missing }}|{{ user.missing is defined }}|{{ nope is defined }}|{{ nope is not defined }}|{{ n is none }}",
         "AnnAnnb|False|False|True|True"),
        ("{{ 1 < 2 < 3 }}{{ 1 == 1.0 }}{{ 'a' != 'b' }}{{ 'b' in 'abc' }}{{ 2 in items }}{{ 5 not in items }}{{ 'name' in user }}{{ not flag }}",
         "TrueTrueTrueTrueTrueTrueTrueFalse"),
        ("{{ flag and 'yes' or 'no' }}|{{ n or 'default' }}|{{ 0 and 1 }}|{{ 'x' if flag else 'y' }}|{{ 'x' if not flag }}|",
         "yes|default|0|x||"),
        ("{% for x in items if x > 1 %}{{ loop.index }}/{{ loop.length }}:{{ x }}{{ ',' if not loop.last }}{% endfor %}",
         "1/2:3,2/2:2"),
        ("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{% for k in d %}{{ k }}{% endfor %}|{% for x in [] %}x{% else %}empty{% endfor %}",
         "b=1;a=[1, 2.5, None, True, 'x'];|ba|empty"),
        ("{% for x in items %}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.previtem }}{{ loop.nextitem }};{% endfor %}",
         "032True1;121False32;210False1;"),
        ("{% set ns = namespace(total=0, found=false) %}{% for x in items %}{% set ns.total = ns.total + x %}{% endfor %}{{ ns.total }}{{ ns.found }}",
         "6False"),
        ("{% set x = 1 %}{% for i in range(3) %}{% set x = i %}{% endfor %}{{ x }}|{{ range(2, 8, 3) | list }}",
         "1|[2, 5]"),
        ("{% macro greet(name, greeting='Hi') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', greeting='Yo') }} {{ greet('Cy', 'Hey') }}",
         "Hi, Ann! Yo, Bob! Hey, Cy!"),
        ("{{ s|trim }}|{{ s|length }}|{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s|upper }}|{{ s|lower }}|{{ 'hello wORLD'|title }}|{{ 'hello wORLD'|capitalize }}",
         "Hello World|15|Hello World|Hello World  |  Hello World|  HELLO WORLD  |  hello world  |Hello World|Hello world"),
        ("{{ items|first }}{{ items|last }}{{ items|join('-') }}{{ items|sort }}{{ items|sort(reverse=true) }}{{ items|reverse|list }}{{ items|sum }}{{ items|min }}{{ items|max }}",
         "323-1-2[1, 2, 3][3, 2, 1][2, 1, 3]613"),
        ("{{ nope|default('dflt') }}|{{ ''|default('e', true) }}|{{ nope|d('x') }}|{{ 'a-b-c'|replace('-', '+') }}|{{ 42|string }}|{{ '12'|int + 1 }}|{{ '2.5'|float }}|{{ 'x'|int }}",
         "dflt|e|x|a+b+c|42|13|2.5|0"),
        ("{{ msgs|map(attribute='role')|join(',') }}|{{ msgs|selectattr('role', 'equalto', 'user')|map(attribute='content')|list }}|{{ msgs|rejectattr('role', 'equalto', 'user')|list|length }}",
         "user,assistant,user|['hi', 'bye']|1"),
        ("{{ [1,2,3,4]|select('odd')|list }}|{{ [1,2,3,4]|reject('even')|list }}|{{ ['a','A','b']|unique|list }}|{{ [-3, 2]|map('abs')|list }}|{{ 2.567|round(2) }}|{{ 2.5|round }}",
         "[1, 3]|[1, 3]|['a', 'b']|[3, 2]|2.57|2.0"),
        ("{{ d|tojson }}|{{ d|items|map('first')|list }}|{{ {'z': '<&>\\''}|tojson }}|{{ 'x\\ny'|indent(2, true) }}|{{ d.get('b') }}{{ d.get('q', 'none!') }}{{ d.keys()|list }}",
         "{\"a\": [1, 2.5, null, true, \"x\"], \"b\": 1}|['b', 'a']|{\"z\": \"\\u003c\\u0026\\u003e\\u0027\"}|  x\n  y|1none!['b', 'a']"),
        ("{{ 'a,b,c'.split(',') }}|{{ 'a b  c'.split() }}|{{ 'hello'.startswith('he') }}{{ 'hello'.endswith('lo') }}|{{ 'Hi'.upper() }}{{ 'Hi'.lower() }}|{{ 'aXa'.replace('a', 'o') }}",
         "['a', 'b', 'c']|['a', 'b', 'c']|TrueTrue|HIhi|oXo"),
        ("{{ 1 is number }}{{ 'a' is string }}{{ d is mapping }}{{ items is iterable }}{{ items is sequence }}{{ flag is boolean }}{{ flag is true }}{{ n is false }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}",
         "TrueTrueTrueTrueTrueTrueTrueFalseTrueTrueTrue"),
        ("  {% if flag %}\n    yes\n  {% endif %}\nend\n{# comment #}\n{%- if flag -%}   trimmed   {%- endif %}\n{{- ' after' }}",
         "    yes\nend\ntrimmed after"),
        ("{% set body %}inner {{ 1 + 1 }}{% endset %}[{{ body }}]{% filter upper %}shout{% endfilter %}",
         "[inner 2]SHOUT"),
        ("{{ 'a' 'b' }}{{ (1, 2)|join }}{{ [1, [2, 'x']] }}{{ {'k': none} }}{{ 1e3 }}{{ 0.1 + 0.2 }}{{ true }}{{ none }}",
         "ab12[1, [2, 'x']]{'k': None}1000.00.30000000000000004TrueNone"),
        ("{% raw %}{{ not rendered }}{% endraw %}|{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}",
         "{{ not rendered }}|02"),
    ]

    @Test(arguments: cases.indices)
    func matchesJinja2(_ index: Int) throws {
        let (source, expected) = Self.cases[index]
        #expect(try Template(source).render(Self.context) == expected, "\(source)")
    }

    private func render(_ source: String, _ context: [String: JinjaValue] = [:]) throws -> String {
        try Template(source).render(context)
    }

    @Test func undefinedBehavesLikeJinja2Default() throws {
        #expect(try render("[{{ missing }}][{{ missing.attr }}][{{ missing | default('d') }}]") == "[][][d]")
        #expect(try render("{% if missing %}yes{% else %}no{% endif %}") == "no")
        #expect(try render("{% for x in missing %}x{% endfor %}|{{ missing|length }}") == "|0")
        #expect(try render("{{ missing ~ 'a' }}") == "a")
    }

    @Test func generationBlockRendersBody() throws {
        #expect(try render("{% generation %}a{{ 1 }}{% endgeneration %}b") == "a1b")
    }

    @Test func whitespaceControl() throws {
        #expect(try render("a  {{- 'b' -}}  c") == "abc")
        #expect(try render("{% if true %}\nx\n{% endif %}\n") == "x\n")
        #expect(try render("  {%+ if true %}x{% endif %}") == "  x")
        #expect(try render("<{% if true +%}\n{% endif %}>") == "<\n>")
        #expect(try render("line\n    {# note #}\nnext") == "line\nnext")
    }

    @Test func tojsonMatchesJinja2() throws {
        let value: JinjaValue = ["b": ["x": 1.0, "é": "<'&>"], "a": [true, .none, 3]]
        #expect(try render("{{ v|tojson }}", ["v": value])
            == #"{"a": [true, null, 3], "b": {"x": 1.0, "\u00e9": "\u003c\u0027\u0026\u003e"}}"#)
        #expect(try render("{{ v|tojson(indent=2) }}", ["v": ["k": [1, 2], "e": [], "o": [:]]])
            == "{\n  \"e\": [],\n  \"k\": [\n    1,\n    2\n  ],\n  \"o\": {}\n}")
        #expect(try render("{{ '😀\\u0001'|tojson }}") == #""\ud83d\ude00\u0001""#)
    }

    @Test func objectsKeepInsertionOrder() throws {
        let value = try JinjaValue(json: #"{"z": 1, "a": 2, "m": {"y": 1, "b": 2}}"#)
        #expect(try render("{% for k, v in v.items() %}{{ k }}{% endfor %}", ["v": value]) == "zam")
        #expect(value.jsonString == #"{"z":1,"a":2,"m":{"y":1,"b":2}}"#.replacingOccurrences(of: ":", with: ": ")
            .replacingOccurrences(of: ",", with: ", "))
    }

    @Test func jsonBridging() throws {
        let parsed = try JinjaValue(json: #"{"s": "a\"b\u00e9", "i": 3, "d": 2.5, "b": false, "n": null, "l": [1, "x"]}"#)
        #expect(parsed == ["s": "a\"bé", "i": 3, "d": 2.5, "b": false, "n": nil, "l": [1, "x"]])
        let foundation = try JSONSerialization.jsonObject(with: Data(#"{"t": true, "i": 1, "d": 1.5, "a": [null]}"#.utf8))
        #expect(JinjaValue(jsonObject: foundation) == ["t": true, "i": 1, "d": 1.5, "a": [nil]])
        #expect(JinjaValue(jsonObject: ["x": [1, "y"]] as [String: Any]) == ["x": [1, "y"]])
        let encoded = try JSONEncoder().encode(JinjaValue.array([1, "two", true, nil]))
        #expect(try JSONDecoder().decode(JinjaValue.self, from: encoded) == [1, "two", true, nil])
    }

    @Test func macroCanUpdateNamespace() throws {
        let source = "{% set ns = namespace(n=0) %}{% macro bump() %}{% set ns.n = ns.n + 1 %}{% endmacro %}"
            + "{{ bump() }}{{ bump() }}{{ ns.n }}"
        #expect(try render(source) == "2")
    }

    @Test func loopCycleAndTupleUnpacking() throws {
        #expect(try render("{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{{ loop.cycle('x', 'y') }}{% endfor %}") == "3x7y")
    }
}
