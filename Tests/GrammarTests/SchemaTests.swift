import Grammar
import Testing

func schema(_ json: String) throws -> JSONValue { try JSONValue.parse(json) }

func grammar(_ json: String) throws -> Grammar { try Grammar.jsonSchema(schema(json)) }

/// Every text in `accepted` is a complete output, none in `rejected` is.
func check(_ schemaJSON: String, accepts accepted: [String], rejects rejected: [String],
           sourceLocation: SourceLocation = #_sourceLocation) throws {
    let g = try grammar(schemaJSON)
    for text in accepted {
        #expect(g.accepts(text), "\(schemaJSON) should accept \(text)", sourceLocation: sourceLocation)
    }
    for text in rejected {
        #expect(!g.accepts(text), "\(schemaJSON) should reject \(text)", sourceLocation: sourceLocation)
    }
}

/// The error a schema gets, which must name `keyword`.
func expectUnsupported(_ schemaJSON: String, keyword: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    do {
        _ = try grammar(schemaJSON)
        Issue.record("\(schemaJSON) compiled; expected an error naming '\(keyword)'", sourceLocation: sourceLocation)
    } catch let error as SchemaError {
        #expect(error.keyword == keyword, "\(error)", sourceLocation: sourceLocation)
        #expect(error.description.contains(keyword), sourceLocation: sourceLocation)
    } catch {
        Issue.record("\(schemaJSON): \(error)", sourceLocation: sourceLocation)
    }
}

@Suite struct JSONValueTests {
    @Test func parsesKeepingKeyOrder() throws {
        let v = try JSONValue.parse(#"{"b": 1, "a": [true, null, -2.5e3, "x\u00e9\n"], "c": {}}"#)
        #expect(v.objectValue?.map(\.key) == ["b", "a", "c"])
        #expect(v["a"] == .array([.bool(true), .null, .double(-2500), .string("xé\n")]))
        #expect(v.serialized() == #"{"b":1,"a":[true,null,-2500.0,"xé\n"],"c":{}}"#)
    }

    @Test func rejectsMalformedAndTooDeep() {
        for bad in ["{", "[1,]", "01", "\"a", "{\"a\" 1}", "tru", "1 2", "\"\\ud800\""] {
            #expect(throws: JSONValue.ParseError.self, "\(bad)") { try JSONValue.parse(bad) }
        }
        #expect(throws: JSONValue.ParseError.self) { try JSONValue.parse(String(repeating: "[", count: 300)) }
    }
}

@Suite struct SchemaTests {
    @Test func types() throws {
        try check(#"{"type": "string"}"#, accepts: [#""""#, #""hi""#, #""a\"b\\c\n\u00e9""#, "\"é日本\"", #" "x""#],
                  rejects: ["hi", #""a"#, "\"a\nb\"", #""\ud800""#, "\"\u{1}\"", #""x" "#, #"  "x""#])
        try check(#"{"type": "integer"}"#, accepts: ["0", "-7", "123456"], rejects: ["01", "1.5", "1e3", "-", "+1", ""])
        try check(#"{"type": "number"}"#, accepts: ["0", "-0.5", "3.25", "1e10", "2.5E-3", "-12"],
                  rejects: [".5", "1.", "01", "1e", "--1", "1e+"])
        try check(#"{"type": "boolean"}"#, accepts: ["true", "false"], rejects: ["True", "1", "null"])
        try check(#"{"type": "null"}"#, accepts: ["null"], rejects: ["nul", "None", "0"])
        try check(#"{"type": ["string", "null"]}"#, accepts: [#""a""#, "null"], rejects: ["1"])
    }

    @Test func numbersAreBounded() throws {
        try check(#"{"type": "integer"}"#, accepts: [String(repeating: "9", count: 16)],
                  rejects: [String(repeating: "9", count: 17)])
    }

    @Test func objects() throws {
        let person = #"""
            {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
             "email": {"type": "string"}}, "required": ["name", "age"], "additionalProperties": false}
            """#
        try check(person,
                  accepts: [#"{"name":"Ann","age":3}"#, #"{"name": "Ann", "age": 3, "email": "a@b"}"#,
                            "{\n\"name\":\"A\",\n\"age\":1\n}"],
                  rejects: [#"{"age":3,"name":"Ann"}"#, #"{"name":"Ann"}"#, #"{"name":"Ann","age":3,"x":1}"#,
                            #"{"name":"Ann","age":3,}"#, #"{"name":  "Ann","age":3}"#, #"{}"#])
        // Optional properties may each be left out, in any combination, keeping the order.
        try check(#"{"properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}"#,
                  accepts: ["{}", #"{"a":1}"#, #"{"b":2}"#, #"{"a":1,"b":2}"#, "{ }"],
                  rejects: [#"{"b":2,"a":1}"#, #"{,"b":2}"#, #"{"a":1,}"#, #"{"c":1}"#])
    }

    @Test func additionalProperties() throws {
        try check(#"{"type": "object"}"#, accepts: ["{}", #"{"x":[1,{"y":null}],"z":"w"}"#], rejects: ["[]", "{"])
        try check(#"{"type": "object", "additionalProperties": {"type": "integer"}}"#,
                  accepts: [#"{"a":1,"b":2}"#], rejects: [#"{"a":"x"}"#])
        try check(#"{"properties": {"id": {"type": "integer"}}, "required": ["id"], "additionalProperties": {"type": "boolean"}}"#,
                  accepts: [#"{"id":1}"#, #"{"id":1,"ok":true}"#, #"{"id":1,"i":true}"#, #"{"id":1,"idx":false}"#],
                  rejects: [#"{"id":1,"id":true}"#, #"{"id":1,"ok":2}"#, #"{"id":1,"\u0069d":true}"#])
    }

    @Test func arrays() throws {
        try check(#"{"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 3}"#,
                  accepts: ["[1,2]", "[1, 2, 3]", "[ 1,2 ]"], rejects: ["[]", "[1]", "[1,2,3,4]", "[1,\"a\"]", "[1,,2]"])
        try check(#"{"type": "array", "items": {"type": "boolean"}}"#, accepts: ["[]", "[true]", "[true,false,true]"],
                  rejects: ["[1]", "[true,]"])
        try check(#"{"type": "array", "minItems": 1}"#, accepts: ["[1]", #"[{"a":[]},"x",null]"#], rejects: ["[]"])
        try check(#"{"prefixItems": [{"type": "string"}, {"type": "integer"}], "items": false}"#,
                  accepts: [#"["a",1]"#, #"["a"]"#, "[]"], rejects: [#"[1,"a"]"#, #"["a",1,2]"#])
    }

    @Test func enumAndConst() throws {
        try check(#"{"enum": ["red", "green", 3, null, {"a": [1]}]}"#,
                  accepts: [#""red""#, #""green""#, "3", "null", #"{"a":[1]}"#], rejects: [#""blue""#, #""re""#, "4"])
        try check(#"{"const": "fixed"}"#, accepts: [#""fixed""#], rejects: [#""other""#])
        // Other keywords still apply to enum values.
        try check(#"{"type": "string", "enum": ["a", 1, "bb"], "maxLength": 1}"#, accepts: [#""a""#], rejects: ["1", #""bb""#])
        try expectUnsupported(#"{"type": "integer", "enum": ["a"]}"#, keyword: "enum")
    }

    @Test func anyOf() throws {
        try check(#"{"anyOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": false},"#
                  + #" {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": false}]}"#,
                  accepts: [#"{"a":1}"#, #"{"a":"x"}"#], rejects: [#"{"a":true}"#, "{}"])
    }

    @Test func stringLengths() throws {
        try check(#"{"type": "string", "minLength": 2, "maxLength": 3}"#,
                  accepts: [#""ab""#, #""abc""#, #""é\n""#], rejects: [#""a""#, #""abcd""#])
        try check(#"{"type": "string", "minLength": 1}"#, accepts: [#""a""#, #""abcdefgh""#], rejects: [#""""#])
    }

    @Test func patterns() throws {
        try check(#"{"type": "string", "pattern": "^[a-z]+-\\d{2,3}$"}"#,
                  accepts: [#""ab-12""#, #""x-999""#], rejects: [#""ab-1""#, #""AB-12""#, #""ab-1234""#, #""-12""#])
        try check(#"{"type": "string", "pattern": "^(cat|dog)s?$"}"#,
                  accepts: [#""cat""#, #""dogs""#], rejects: [#""cow""#, #""catss""#])
        // Unanchored: matches anywhere.
        try check(#"{"type": "string", "pattern": "\\d"}"#, accepts: [#""a1b""#, #""7""#], rejects: [#""abc""#])
        // Characters that JSON escapes are written escaped.
        try check(#"{"type": "string", "pattern": "^a\"b\\\\c\\n$"}"#, accepts: [#""a\"b\\c\n""#], rejects: ["\"a\"b\""])
        try check(#"{"type": "string", "pattern": "^[^0-9]\\w*\\s?.$"}"#,
                  accepts: [#""a_1 é""#, #""xy""#], rejects: [#""1a""#, #""a""#])
        try check(#"{"type": "string", "format": "date"}"#, accepts: [#""2024-02-29""#], rejects: [#""2024-13-01""#, #""24-01-01""#])
        for bad in [#"(?=a)"#, #"(a)\\1"#, #"\\bword"#, #"a++"#, #"a^b"#, #"[[:alpha:]]"#, #"\\p{L}"#, #"(a"#] {
            try expectUnsupported(#"{"type": "string", "pattern": "\#(bad)"}"#, keyword: "pattern")
        }
    }

    @Test func integerRanges() throws {
        try check(#"{"type": "integer", "minimum": 0, "maximum": 120}"#,
                  accepts: ["0", "7", "99", "100", "120"], rejects: ["-1", "121", "200", "1000", "-0"])
        try check(#"{"type": "integer", "minimum": -15, "exclusiveMaximum": 10}"#,
                  accepts: ["-15", "-9", "0", "9"], rejects: ["-16", "10", "-20"])
        try check(#"{"type": "integer", "minimum": 37, "maximum": 4321}"#,
                  accepts: ["37", "40", "99", "100", "999", "1000", "4321", "4299"], rejects: ["36", "4322", "5000", "9", "4330"])
        try check(#"{"type": "integer", "exclusiveMinimum": 0}"#, accepts: ["1", "123456789"], rejects: ["0", "-1"])
        try check(#"{"type": "integer", "maximum": -3}"#, accepts: ["-3", "-100"], rejects: ["-2", "0", "3"])
        // Every integer in a range, and nothing around it.
        let g = try grammar(#"{"type": "integer", "minimum": -123, "maximum": 1045}"#)
        for n in -1200...1200 { #expect(g.accepts(String(n)) == (n >= -123 && n <= 1045), "\(n)") }
    }

    @Test func references() throws {
        try check(##"{"$defs": {"p": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}},"##
                  + ##" "type": "array", "items": {"$ref": "#/$defs/p"}}"##,
                  accepts: [#"[{"x":1},{"x":2}]"#], rejects: [#"[{"y":1}]"#])
        try expectUnsupported(##"{"$defs": {"n": {"properties": {"next": {"$ref": "#/$defs/n"}}}}, "$ref": "#/$defs/n"}"##,
                              keyword: "$ref")
        try expectUnsupported(#"{"$ref": "https://example.com/s.json"}"#, keyword: "$ref")
        try expectUnsupported(##"{"$ref": "#/$defs/missing"}"##, keyword: "$ref")
    }

    @Test func unsupportedKeywordsAreNamed() throws {
        for (schema, keyword) in [
            (#"{"type": "object", "patternProperties": {"^a": {}}}"#, "patternProperties"),
            (#"{"if": {}, "then": {}}"#, "if"),
            (#"{"not": {"type": "string"}}"#, "not"),
            (#"{"oneOf": [{"type": "string"}]}"#, "oneOf"),
            (#"{"allOf": [{"type": "string"}, {"minLength": 1}]}"#, "allOf"),
            (#"{"type": "array", "uniqueItems": true}"#, "uniqueItems"),
            (#"{"type": "number", "multipleOf": 2}"#, "multipleOf"),
            (#"{"type": "number", "minimum": 0}"#, "minimum"),
            (#"{"type": "string", "format": "hostname"}"#, "format"),
            (#"{"type": "array", "items": [{"type": "string"}]}"#, "items"),
            (#"{"type": "object", "properties": {"a": {"type": "array", "contains": {}}}}"#, "contains"),
            (#"{"type": "array", "maxItems": 100000}"#, "maxItems"),
            (#"{"type": "widget"}"#, "type"),
            (#"false"#, "false"),
        ] {
            try expectUnsupported(schema, keyword: keyword)
        }
    }

    @Test func hostileSchemasAreRefusedQuickly() throws {
        // Deep nesting, huge enums and exploding patterns hit a bound and fail cleanly.
        var deep = #"{"type": "string"}"#
        for _ in 0..<100 { deep = #"{"type": "array", "items": \#(deep)}"# }
        try expectUnsupported(deep, keyword: "schema")
        let bigEnum = "[" + (0..<60_000).map { "\"value-number-\($0)\"" }.joined(separator: ",") + "]"
        try expectUnsupported(#"{"enum": \#(bigEnum)}"#, keyword: "schema")
        try expectUnsupported(#"{"type": "string", "pattern": "^((a{1000}){1000}){1000}$"}"#, keyword: "schema")
    }

    /// Found by fuzzing: each unanchored branch of a pattern got its own "any text" ends, so `^|||…|x`
    /// (80 empty branches) built an automaton whose every step tracked all of them (seconds per check).
    /// Branches with the same anchors now share one pair (74,762 states before, under 1,000 now); the
    /// language is unchanged.
    @Test func manyAlternativesShareTheirEnds() throws {
        let alternatives = "^x" + String(repeating: "|", count: 200) + "|[^0-9]$"
        let g = try grammar(#"{"type": "string", "pattern": "\#(alternatives)"}"#)
        #expect(g.stateCount < 2000, "\(g.stateCount) states")
        for text in [#""x""#, #""xyz""#, #""""#, #""9 9""#] { #expect(g.accepts(text), "\(text)") }
        try check(#"{"type": "string", "pattern": "^ab|cd$|ef|^gh$"}"#,
                  accepts: [#""abz""#, #""zcd""#, #""zefz""#, #""gh""#], rejects: [#""zab""#, #""cdz""#, #""ghz""#, #""zz""#])
    }

    @Test func jsonObjectMode() {
        let g = Grammar.jsonObject()
        #expect(g.accepts(#"{"a": [1, {"b": "c"}], "d": null}"#))
        #expect(!g.accepts("[1]") && !g.accepts(#""s""#) && !g.accepts("{} {}"))
        // Nesting is bounded.
        let deep = String(repeating: #"{"a":"#, count: 100) + "1" + String(repeating: "}", count: 100)
        #expect(!g.accepts(deep))
        let shallow = String(repeating: #"{"a":"#, count: 40) + "1" + String(repeating: "}", count: 40)
        #expect(g.accepts(shallow))
    }

    @Test func jsonOrText() throws {
        let g = try Grammar.jsonSchemaOrText(schema(#"{"type": "object", "properties": {"name": {"const": "f"}}, "required": ["name"], "additionalProperties": false}"#))
        #expect(g.accepts(#"{"name":"f"}"#))
        #expect(g.accepts("Hello there {not json"))
        #expect(g.accepts(""))
        #expect(!g.accepts(#"{"name":"g"}"#))
        #expect(!g.accepts("{hello"))
    }
}
