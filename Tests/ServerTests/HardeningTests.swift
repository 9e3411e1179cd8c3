import Engine
import Foundation
import Grammar
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Server
import Testing

/// Requests that once took a whole server down or exhausted it: each must get a clean answer.
@Suite(.serialized) struct HardeningTests {
    /// A chat body whose `response_format` schema nests `depth` arrays-of-arrays deep.
    static func nestedSchemaBody(depth: Int) -> String {
        var schema = #"{"type": "string"}"#
        for _ in 0..<depth { schema = #"{"type": "array", "items": \#(schema)}"# }
        return """
            {"model": "test-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
             "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": \(schema)}}}
            """
    }

    @Test func hugeChoiceCountsAre400BeforeAnythingIsBuilt() async throws {
        guard let (server, service, _) = try modelServer() else { return }
        defer { service.shutdown() }
        let client = RouterClient(server)
        let huge = "4611686018427387904"  // 2**62: prompts.count * n overflowed, chat built n requests first
        let cases: [(String, String, String)] = [
            ("/v1/completions", #"{"model": "smollm2", "prompt": ["a", "b"], "max_tokens": 1, "n": \#(huge)}"#, "n"),
            ("/v1/completions", #"{"model": "smollm2", "prompt": "a", "max_tokens": 1, "n": \#(huge)}"#, "n"),
            ("/v1/completions", #"{"model": "smollm2", "prompt": ["a", "b", "c", "d", "e", "f"], "max_tokens": 1, "n": 3}"#, "n"),
            ("/v1/completions", #"{"model": "smollm2", "prompt": "a", "max_tokens": 1, "n": 2, "best_of": \#(huge)}"#, "best_of"),
            ("/v1/completions", #"{"model": "smollm2", "prompt": "a", "max_tokens": 1, "n": -\#(huge)}"#, "n"),
            ("/v1/chat/completions", #"{"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "n": \#(huge)}"#, "n"),
            ("/v1/chat/completions", #"{"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "n": 1000000}"#, "n"),
            ("/v1/chat/completions", #"{"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "logprobs": true, "top_logprobs": \#(huge)}"#, "top_logprobs"),
            ("/v1/completions", #"{"model": "smollm2", "prompt": "a", "logprobs": \#(huge)}"#, "logprobs"),
            ("/v1/completions", #"{"model": "smollm2", "prompt": "a", "max_tokens": -\#(huge)}"#, "max_tokens"),
        ]
        for (path, body, param) in cases {
            let r = try await client.post(path, body)
            #expect(r.status == .badRequest, "\(body): \(r.body)")
            #expect(r.error?["param"] as? String == param, "\(body): \(r.body)")
        }
        let manyMessages = Array(repeating: #"{"role": "user", "content": ""}"#, count: 2049).joined(separator: ",")
        let messages = try await client.post("/v1/chat/completions", #"{"model": "smollm2", "messages": [\#(manyMessages)]}"#)
        #expect(messages.status == .badRequest && messages.error?["param"] as? String == "messages")
        let manyTools = Array(repeating: #"{"type": "function", "function": {"name": "f"}}"#, count: 129).joined(separator: ",")
        let tools = try await client.post("/v1/chat/completions",
                                          #"{"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "tools": [\#(manyTools)]}"#)
        #expect(tools.status == .badRequest && tools.error?["param"] as? String == "tools")
        let stats = service.stats
        #expect(stats.steps == 0 && stats.waiting == 0 && stats.running == 0)
    }

    /// `max_tokens: 0` with `echo` and `logprobs` is how evaluation harnesses score a text: the prompt
    /// comes back with its logprobs (null for the first token), and nothing is generated.
    @Test func zeroMaxTokensEchoesThePromptsLogprobs() async throws {
        guard let (server, service, engine) = try modelServer() else { return }
        defer { service.shutdown() }
        let client = RouterClient(server)
        let text = "The capital of France is Paris."
        let prompt = engine.encode(text)
        let direct = try engine.generate(GenerationRequest(promptTokens: prompt, maxTokens: 1, logprobs: 1, promptLogprobs: true))
        for stream in [false, true] {
            let r = try await client.post("/v1/completions", """
                {"model": "smollm2", "prompt": "\(text)", "max_tokens": 0, "echo": true, "logprobs": 1, "stream": \(stream)}
                """)
            #expect(r.status == .ok, "\(r.body)")
            var choiceText = ""
            var tokenLogprobs: [Double?] = []
            var finish: String?
            let objects: [[String: Any]] = stream
                ? try r.body.components(separatedBy: "\n\n").filter { $0.hasPrefix("data: {") }.map {
                    try #require(try JSONSerialization.jsonObject(with: Data($0.dropFirst(6).utf8)) as? [String: Any])
                }
                : [try r.json()]
            for object in objects {
                for choice in object["choices"] as? [[String: Any]] ?? [] {
                    choiceText += choice["text"] as? String ?? ""
                    if let lp = choice["logprobs"] as? [String: Any], let values = lp["token_logprobs"] as? [Any] {
                        tokenLogprobs += values.map { $0 as? Double }
                    }
                    if let f = choice["finish_reason"] as? String { finish = f }
                }
            }
            #expect(choiceText == text && finish == "length")
            #expect(tokenLogprobs.count == prompt.count && tokenLogprobs.first! == nil)
            for (got, want) in zip(tokenLogprobs.dropFirst(), direct.promptLogprobs) {
                #expect(abs((got ?? 1) - Double(want.logprob)) < 1e-3)
            }
            if !stream {
                let usage = try #require(try r.json()["usage"] as? [String: Any])
                #expect(usage["completion_tokens"] as? Int == 0 && usage["prompt_tokens"] as? Int == prompt.count)
            }
        }
        // Without echo the answer is an empty completion; nothing is computed.
        let plain = try await client.post("/v1/completions", #"{"model": "smollm2", "prompt": "Hi", "max_tokens": 0}"#)
        let choice = try #require((try plain.json()["choices"] as? [[String: Any]])?.first)
        #expect(plain.status == .ok && choice["text"] as? String == "" && choice["finish_reason"] as? String == "length")
        waitUntil("the service to be idle") { service.stats.running == 0 && service.stats.waiting == 0 }
        #expect(service.stats.kvBlocksUsed == 0)
    }

    @Test func deepBodiesAre400AtOnceNamingTheLimit() throws {
        for depth in [130, 500, 100_000] {
            let body = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
            let wrapped = #"{"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": \#(body)}"#
            do {
                _ = try OpenAIServer.decodeJSON(ChatCompletionRequest.self, from: Data(wrapped.utf8))
                Issue.record("decoded a body \(depth) deep")
            } catch let e as APIError {
                #expect(e.status == .badRequest && e.code == "json_too_deep" && e.message.contains("128"), "\(e)")
                #expect(e.param == "tools")
            }
        }
        do {
            _ = try OpenAIServer.decodeJSON(ChatCompletionRequest.self, from: Data(Self.nestedSchemaBody(depth: 500).utf8))
            Issue.record("decoded a schema 500 deep")
        } catch let e as APIError {
            #expect(e.code == "json_too_deep" && e.param == "response_format", "\(e)")
        }
        // Within the limit the schema arrives whole, its keys in order.
        let ok = try OpenAIServer.decodeJSON(ChatCompletionRequest.self, from: Data(Self.nestedSchemaBody(depth: 60).utf8))
        var schema = try #require(ok.responseFormat?.jsonSchema?.schema)
        for _ in 0..<60 {
            #expect(schema.objectValue?.map(\.key) == ["type", "items"])
            schema = try #require(schema["items"])
        }
        #expect(schema == .object([("type", .string("string"))]))
    }

    /// Decoding a JSONValue without the parsed document (any Decoder) stops at a bounded depth.
    @Test func jsonValueDecodingIsDepthBounded() throws {
        let deep = String(repeating: "[", count: 400) + String(repeating: "]", count: 400)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(JSONValue.self, from: Data(deep.utf8)) }
        let fine = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(try JSONDecoder().decode(JSONValue.self, from: Data(fine.utf8)) == (try JSONValue.parse(fine)))
        // An object with many keys (a repeated one keeps its first place, its last value) parses in one pass.
        let keys = (0..<50_000).map { #""k\#($0)": \#($0)"# }.joined(separator: ",")
        let object = try JSONValue.parse(#"{\#(keys), "k0": -1}"#)
        #expect(object.objectValue?.count == 50_000 && object["k0"] == .int(-1) && object.objectValue?.first?.key == "k0")
    }

    /// 128 tools of 10 properties each (84 KB) and depth-500 schemas get their answer, not minutes of CPU.
    @Test func manyToolsAndDeepSchemasAreAnswered() async throws {
        guard let (server, service, _) = try modelServer() else { return }
        defer { service.shutdown() }
        let client = RouterClient(server)
        let properties = (0..<10).map { #""p\#($0)": {"type": "string", "enum": ["a\#($0)", "b\#($0)"]}"# }.joined(separator: ",")
        let tools = (0..<128).map {
            #"{"type": "function", "function": {"name": "tool_\#($0)", "description": "Tool number \#($0).", "parameters": {"type": "object", "properties": {\#(properties)}, "required": ["p0"]}}}"#
        }.joined(separator: ",")
        let body = #"{"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "tools": [\#(tools)]}"#
        let r = try await client.post("/v1/chat/completions", body)
        #expect(r.status == .ok || r.status == .badRequest, "\(r.body)")
        let deep = try await client.post("/v1/chat/completions", Self.nestedSchemaBody(depth: 500))
        #expect(deep.status == .badRequest && deep.error?["code"] as? String == "json_too_deep")
        let enums = (0..<20).map { _ in String(repeating: "[", count: 500) + String(repeating: "]", count: 500) }
        let enumBody = #"{"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_schema", "json_schema": {"name": "e", "schema": {"enum": [\#(enums.joined(separator: ","))]}}}}"#
        let enumReply = try await client.post("/v1/chat/completions", enumBody)
        #expect(enumReply.status == .badRequest && enumReply.error?["code"] as? String == "json_too_deep")
        waitUntil("the service to be idle") { service.stats.running == 0 && service.stats.waiting == 0 }
    }

    /// Compiling the schemas of a client that has gone stops (a client disconnect), instead of running on.
    @Test func schemaCompilationStopsWhenTheClientIsGone() async throws {
        guard let (server, service, _) = try modelServer() else { return }
        defer { service.shutdown() }
        let client = RouterClient(server)
        let properties = (0..<10).map { #""p\#($0)": {"type": "string", "maxLength": 200}"# }.joined(separator: ",")
        let schema = #"{"type": "object", "properties": {\#(properties)}}"#
        let tools = (0..<3).map { #"{"type": "function", "function": {"name": "t\#($0)", "parameters": \#(schema)}}"# }
        let chat = #"{"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, "tools": [\#(tools.joined(separator: ","))]}"#
        let completion = #"{"model": "smollm2", "prompt": "hi", "max_tokens": 1, "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": \#(schema)}}}"#
        for (path, body) in [("/v1/chat/completions", chat), ("/v1/completions", completion)] {
            let gone = try await client.post(path, body, clientGone: true)
            #expect(gone.status.code == 499 && gone.error?["code"] as? String == "client_disconnected", "\(gone.body)")
        }
        // The same tools compile in full for a client that is there (tool_choice none: no constrained generation).
        let here = try await client.post("/v1/chat/completions", chat.replacingOccurrences(of: #""max_tokens": 1,"#,
                                                                                         with: #""max_tokens": 1, "tool_choice": "none","#))
        #expect(here.status == .ok, "\(here.body)")
        #expect(service.stats.cancelled == 0)
    }

    /// A body that ends early (the client went away) is a client disconnect, not a server error.
    @Test func aBodyCutShortIsAClientDisconnectNotA500() async throws {
        let server = OpenAIServer()
        let responder = server.makeRouter().buildResponder()
        struct CutShort: AsyncSequence, Sendable {
            typealias Element = ByteBuffer
            struct AsyncIterator: AsyncIteratorProtocol {
                var sent = false
                mutating func next() async throws -> ByteBuffer? {
                    if sent { throw HTTPParserError.invalidEOFState }
                    sent = true
                    return ByteBuffer(string: #"{"model": "m", "messa"#)
                }
            }
            func makeAsyncIterator() -> AsyncIterator { AsyncIterator() }
        }
        for path in ["/v1/chat/completions", "/v1/completions"] {
            let head = HTTPRequest(method: .post, scheme: "http", authority: "127.0.0.1", path: path,
                                   headerFields: [.contentType: "application/json", .contentLength: "1000"])
            let request = Request(head: head, body: RequestBody(asyncSequence: CutShort()))
            let context = ServerRequestContext(source: ApplicationRequestContextSource(
                channel: EmbeddedChannel(), logger: Logger(label: "test")))
            let response = try await responder.respond(to: request, context: context)
            #expect(response.status.code == 499)
        }
        let metrics = try await RouterClient(server).send(.get, "/metrics")
        #expect(metrics.body.contains(#"swiftlet_errors_total{status="499",code="client_disconnected"} 2"#))
        #expect(!metrics.body.contains(#"status="500""#))
    }
}
