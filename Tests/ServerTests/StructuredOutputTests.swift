import Foundation
import Grammar
import Server
import Testing

@Suite struct StructuredOutputProtocolTests {
    @Test func chatRequestWithToolsAndResponseFormat() throws {
        let body = #"""
            {"model": "m", "messages": [
               {"role": "user", "content": "Weather?"},
               {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}],
             "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
               "parameters": {"type": "object", "properties": {"zeta": {"type": "string"}, "alpha": {"type": "integer"}}}}}],
             "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "parallel_tool_calls": false,
             "response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": true,
               "schema": {"type": "object", "properties": {"b": {"type": "integer"}, "a": {"type": "integer"}, "c": {}}}}}}
            """#
        let r = try OpenAIServer.decodeJSON(ChatCompletionRequest.self, from: Data(body.utf8))
        #expect(r.messages[1].toolCalls?.first?.function.name == "get_weather")
        #expect(r.messages[2].role == "tool" && r.messages[2].toolCallID == "call_1")
        #expect(r.toolChoice == .function("get_weather") && r.parallelToolCalls == false)
        #expect(r.responseFormat?.type == "json_schema" && r.responseFormat?.jsonSchema?.strict == true)
        // Properties keep the order they were written in.
        #expect(r.responseFormat?.jsonSchema?.schema?["properties"]?.objectValue?.map(\.key) == ["b", "a", "c"])
        #expect(r.tools?[0].function.parameters?["properties"]?.objectValue?.map(\.key) == ["zeta", "alpha"])
    }

    @Test func toolChoiceForms() throws {
        for (json, choice) in [(#""none""#, ToolChoice.none), (#""auto""#, .auto), (#""required""#, .required)] {
            #expect(try JSONDecoder().decode(ToolChoice.self, from: Data(json.utf8)) == choice)
        }
        let body = #"{"model": "m", "messages": [], "tool_choice": "often"}"#
        do {
            _ = try OpenAIServer.decodeJSON(ChatCompletionRequest.self, from: Data(body.utf8))
            Issue.record("decoded")
        } catch let e as APIError {
            #expect(e.param == "tool_choice")
        }
    }

    @Test func toolCallsEncodeAsOpenAIDoes() throws {
        let message = ChatCompletionMessage(content: nil, toolCalls: [ToolCall(id: "call_1", name: "f", arguments: "{}")])
        let json = String(decoding: try JSONEncoder().encode(message), as: UTF8.self)
        #expect(json.contains(#""tool_calls":[{"#) && json.contains(#""content":null"#))
        let text = String(decoding: try JSONEncoder().encode(ChatCompletionMessage(content: "hi")), as: UTF8.self)
        #expect(!text.contains("tool_calls"))
        let first = try JSONSerialization.jsonObject(with: JSONEncoder().encode(
            ToolCallDelta(index: 0, id: "call_1", name: "f", arguments: ""))) as? [String: Any]
        #expect(first?["type"] as? String == "function" && first?["id"] as? String == "call_1")
        let more = try JSONSerialization.jsonObject(with: JSONEncoder().encode(ToolCallDelta(index: 0, arguments: "{\""))) as? [String: Any]
        #expect(more?["id"] == nil && more?["type"] == nil && (more?["function"] as? [String: Any])?["arguments"] as? String == "{\"")
    }
}

@Suite struct ToolCallScannerTests {
    @Test func completeCallsKeepTheArgumentsAsWritten() {
        let one = ToolCallScanner.scan(#" {"name": "get_weather", "arguments": {"city": "Pa\"ris", "n": [1, {"x": "}"}]}}"#)
        #expect(one.isToolCall)
        #expect(one.calls == [.init(name: "get_weather", arguments: #"{"city": "Pa\"ris", "n": [1, {"x": "}"}]}"#, argumentsComplete: true)])
        let two = ToolCallScanner.scan(#"[{"name":"a","arguments":{}},{"name":"b","arguments":{"k":1}}]"#)
        #expect(two.calls.map(\.name) == ["a", "b"] && two.calls.map(\.arguments) == ["{}", #"{"k":1}"#])
        #expect(!ToolCallScanner.scan("Hello {").isToolCall)
    }

    @Test func partialTextReportsWhatIsThere() {
        let texts = [#"{"na"#, #"{"name": "f", "argu"#, #"{"name": "f", "arguments": {"city": "Ro"#,
                     #"{"name": "f", "arguments": {"city": "Rome"}"#]
        let scans = texts.map(ToolCallScanner.scan)
        #expect(scans[0].calls.first?.name == nil)
        #expect(scans[1].calls.first?.name == "f" && scans[1].calls.first?.arguments == "")
        #expect(scans[2].calls.first?.arguments == #"{"city": "Ro"# && scans[2].calls.first?.argumentsComplete == false)
        #expect(scans[3].calls.first?.arguments == #"{"city": "Rome"}"# && scans[3].calls.first?.argumentsComplete == true)
        // Arguments only ever grow, so a stream can send the difference.
        #expect(scans[3].calls[0].arguments.hasPrefix(scans[2].calls[0].arguments))
    }
}
