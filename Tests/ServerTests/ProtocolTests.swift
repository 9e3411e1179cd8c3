import Engine
import Foundation
import Server
import Testing

private func decode<T: Decodable>(_ type: T.Type, _ json: String) throws -> T {
    try JSONDecoder().decode(T.self, from: Data(json.utf8))
}

/// The APIError a body gets when decoding fails (nil if it decodes).
private func decodingError<T: Decodable>(_ type: T.Type, _ json: String) -> APIError? {
    decodingError(type, Data(json.utf8))
}

private func decodingError<T: Decodable>(_ type: T.Type, _ data: Data) -> APIError? {
    do {
        _ = try OpenAIServer.decodeJSON(type, from: data)
        return nil
    } catch let e as APIError {
        return e
    } catch {
        Issue.record("not an APIError: \(error)")
        return nil
    }
}

private func jsonObject(_ value: some Encodable) throws -> [String: Any] {
    let data = try JSONEncoder().encode(value)
    return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
}

@Suite struct RequestDecodingTests {
    @Test func chatRequestWithEveryParameter() throws {
        let r = try decode(ChatCompletionRequest.self, """
            {"model": "m", "messages": [{"role": "system", "content": "Be brief."},
              {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
              {"role": "assistant", "content": null}],
             "max_tokens": 5, "max_completion_tokens": 6, "temperature": 0.5, "top_p": 0.9, "n": 2, "stop": "x",
             "seed": -3, "presence_penalty": 0.1, "frequency_penalty": 0.2, "logit_bias": {"12": -100},
             "logprobs": true, "top_logprobs": 2, "user": "u", "stream": true, "stream_options": {"include_usage": true},
             "top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1, "ignore_eos": true, "unknown_field": [1]}
            """)
        #expect(r.messages.count == 3)
        #expect(r.messages[1].content == .parts([ContentPart(text: "a"), ContentPart(text: "b")]))
        #expect(r.messages[2].content == nil)
        #expect(r.stop == StopSequences(["x"]))
        #expect(r.seed == -3 && r.maxTokens == 5 && r.maxCompletionTokens == 6 && r.n == 2)
        #expect(r.logitBias == ["12": -100] && r.topLogprobs == 2 && r.streamOptions?.includeUsage == true)
        #expect(r.topK == 40 && r.minP == 0.05 && r.repetitionPenalty == 1.1 && r.ignoreEOS == true)
    }

    @Test func stopAndPromptForms() throws {
        #expect(try decode(StopSequences.self, #"["a", "b"]"#) == StopSequences(["a", "b"]))
        #expect(try decode(CompletionPrompt.self, #""hi""#) == .texts(["hi"]))
        #expect(try decode(CompletionPrompt.self, #"["a", "b"]"#) == .texts(["a", "b"]))
        #expect(try decode(CompletionPrompt.self, "[1, 2, 3]") == .tokens([[1, 2, 3]]))
        #expect(try decode(CompletionPrompt.self, "[[1], [2, 3]]") == .tokens([[1], [2, 3]]))
        #expect(try decode(CompletionPrompt.self, "[]") == .texts([]))
    }

    @Test func decodingErrorsNameTheParameter() throws {
        let base = #""model": "m", "messages": [{"role": "user", "content": "hi"}]"#
        let cases: [(String, String, String)] = [
            (#"{\#(base), "temperature": "hot"}"#, "temperature", "invalid_type"),
            (#"{\#(base), "max_tokens": 1.5}"#, "max_tokens", "invalid_type"),
            (#"{\#(base), "max_tokens": 2, "seed": 7, "top_logprobs": 1e1, "n": 2.5}"#, "n", "invalid_type"),
            (#"{\#(base), "logit_bias": {"5": 1.5}, "seed": -99999999999999999999}"#, "seed", "invalid_value"),
            (#"{\#(base), "max_tokens": 1e30}"#, "max_tokens", "invalid_value"),
            (#"{\#(base), "max_tokens": -1e30}"#, "max_tokens", "invalid_value"),
            (#"{\#(base), "seed": 99999999999999999999}"#, "seed", "invalid_value"),
            (#"{\#(base), "temperature": 1e400}"#, "temperature", "invalid_value"),
            (#"{\#(base), "stop": 3}"#, "stop", "invalid_type"),
            (#"{\#(base), "stream": null, "n": "2"}"#, "n", "invalid_type"),
            (#"{"model": "m", "messages": [{"role": "user", "content": 5}]}"#, "messages[0].content", "invalid_type"),
            (#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}"#,
             "messages[0].content[0].text", "invalid_type"),
            (#"{"model": "m", "messages": [{"content": "hi"}]}"#, "messages[0].role", "missing_required_parameter"),
            (#"{"model": "m"}"#, "messages", "missing_required_parameter"),
        ]
        for (json, param, code) in cases {
            let e = try #require(decodingError(ChatCompletionRequest.self, json), "\(json)")
            #expect(e.status == .badRequest, "\(json)")
            #expect(e.param == param, "\(json): \(e)")
            #expect(e.code == code, "\(json): \(e)")
            #expect(!e.message.contains("Swift"), "\(e.message)")
        }
        let notJSON = try #require(decodingError(ChatCompletionRequest.self, #"{"model": "#))
        #expect(notJSON.param == nil && notJSON.status == .badRequest)
        let notObject = try #require(decodingError(ChatCompletionRequest.self, "[1]"))
        #expect(notObject.param == nil && notObject.code == "invalid_type")
        let badUTF8 = try #require(decodingError(ChatCompletionRequest.self, Data([0x7B, 0x22, 0xFF, 0x22, 0x7D])))
        #expect(badUTF8.status == .badRequest && badUTF8.message.contains("UTF-8"))
    }

    @Test func numbersTooBigForTheirTypeAreFoundWhereverTheyAre() {
        // Foundation reports these without a coding path; the server finds the parameter itself.
        let bias = decodingError(ChatCompletionRequest.self, #"""
            {"model": "m", "logit_bias": {"7": 1e999, "8\"": 1}, "messages": [{"role": "user", "content": "hi"}]}
            """#)
        #expect(bias?.param == "logit_bias.7" && bias?.code == "invalid_value")
        let content = decodingError(ChatCompletionRequest.self, #"{"model": "m", "messages": [{"role": "user", "content": -1e999}]}"#)
        #expect(content?.param == "messages[0].content")
        let fraction = decodingError(ChatCompletionRequest.self, #"{"model": "m", "messages": [], "seed": 2.5}"#)
        #expect(fraction?.param == "seed" && fraction?.code == "invalid_type")
        #expect(decodingError(ChatCompletionRequest.self, #"{"model": "m", "messages": [], "n": 1e2}"#) == nil)
        let token = decodingError(CompletionRequest.self, #"{"model": "m", "prompt": [[1, 2], [3, 4.5]]}"#)
        #expect(token?.param == "prompt" && token?.code == "invalid_type")
        // Not valid JSON after the number: no parameter to blame.
        let truncated = decodingError(ChatCompletionRequest.self, #"{"model": "m", "n": 1e999"#)
        #expect(truncated?.param == nil && truncated?.code == "invalid_json")
        let trailing = decodingError(ChatCompletionRequest.self, #"{"model": "m", "n": 1e999} x"#)
        #expect(trailing?.param == nil && trailing?.code == "invalid_json")
        let deep = decodingError(ChatCompletionRequest.self, String(repeating: "[", count: 10_000))
        #expect(deep?.status == .badRequest && deep?.param == nil)
    }
}

@Suite struct ResponseEncodingTests {
    @Test func chatCompletionHasOpenAIsNulls() throws {
        let c = ChatCompletion(
            id: "chatcmpl-1", created: 7, model: "m",
            choices: [ChatCompletionChoice(index: 0, message: ChatCompletionMessage(content: "hi"), logprobs: nil,
                                           finishReason: "stop")],
            usage: Usage(promptTokens: 3, completionTokens: 1))
        let o = try jsonObject(c)
        #expect(o["object"] as? String == "chat.completion")
        #expect(o["system_fingerprint"] is NSNull)
        let usage = try #require(o["usage"] as? [String: Int])
        #expect(usage == ["prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4])
        let choice = try #require((o["choices"] as? [[String: Any]])?.first)
        #expect(choice["logprobs"] is NSNull && choice["finish_reason"] as? String == "stop")
        let message = try #require(choice["message"] as? [String: Any])
        #expect(message["role"] as? String == "assistant" && message["content"] as? String == "hi")
        #expect(message["refusal"] is NSNull)
    }

    @Test func chunksCarryNullFinishReasonAndUsageOnlyWhenAsked() throws {
        var chunk = ChatCompletionChunk(id: "c", created: 1, model: "m",
                                        choices: [ChatChunkChoice(index: 0, delta: ChatDelta(content: "x"))])
        var o = try jsonObject(chunk)
        #expect(o["object"] as? String == "chat.completion.chunk" && o["usage"] == nil)
        let choice = try #require((o["choices"] as? [[String: Any]])?.first)
        #expect(choice["finish_reason"] is NSNull)
        #expect((choice["delta"] as? [String: String]) == ["content": "x"])
        chunk.encodesUsage = true
        o = try jsonObject(chunk)
        #expect(o["usage"] is NSNull)
    }

    @Test func logprobsNeverEncodeInfinity() throws {
        let lp = ChatTokenLogprob(token: "a", logprob: -.infinity, bytes: [97], topLogprobs: [])
        let o = try jsonObject(lp)
        #expect(o["logprob"] as? Double == -9999)
        let legacy = try jsonObject(CompletionLogprobs(tokens: ["a", "b"], tokenLogprobs: [nil, -1],
                                                        topLogprobs: [nil, ["b": -1]], textOffset: [0, 1]))
        #expect((legacy["token_logprobs"] as? [Any])?.first is NSNull)
        #expect((legacy["top_logprobs"] as? [Any])?.first is NSNull)
    }

    @Test func errorBodyShape() throws {
        let o = try jsonObject(APIError.invalidJSON.body)
        let error = try #require(o["error"] as? [String: Any])
        #expect(Set(error.keys) == ["message", "type", "param", "code"])
        #expect(error["param"] is NSNull && error["type"] as? String == "invalid_request_error")
    }

    @Test func responsesRoundTrip() throws {
        let c = Completion(id: "cmpl-1", created: 1, model: "m",
                           choices: [CompletionChoice(index: 0, text: "t", logprobs: nil, finishReason: "length")],
                           usage: Usage(promptTokens: 1, completionTokens: 1))
        let data = try JSONEncoder().encode(c)
        #expect(try JSONDecoder().decode(Completion.self, from: data) == c)
    }
}

@Suite struct ValidationTests {
    @Test func defaultsAreOpenAIs() throws {
        let (p, n, stops) = try SamplingRequest().parameters(vocabularySize: 100)
        #expect(p.temperature == 1 && p.topP == 1 && p.topK == 0 && p.seed == nil)
        #expect(n == 1 && stops.isEmpty)
    }

    @Test func rangesAreEnforced() {
        let bad: [(SamplingRequest, String)] = [
            (SamplingRequest(temperature: 2.01), "temperature"),
            (SamplingRequest(temperature: .nan), "temperature"),
            (SamplingRequest(topP: -0.1), "top_p"),
            (SamplingRequest(topK: -1), "top_k"),
            (SamplingRequest(minP: 1.5), "min_p"),
            (SamplingRequest(repetitionPenalty: 0), "repetition_penalty"),
            (SamplingRequest(presencePenalty: 2.5), "presence_penalty"),
            (SamplingRequest(frequencyPenalty: -3), "frequency_penalty"),
            (SamplingRequest(logitBias: ["x": 1]), "logit_bias"),
            (SamplingRequest(logitBias: ["100": 1]), "logit_bias"),
            (SamplingRequest(logitBias: ["-1": 1]), "logit_bias"),
            (SamplingRequest(logitBias: ["5": 101]), "logit_bias"),
            (SamplingRequest(n: 0), "n"),
            (SamplingRequest(n: 17), "n"),
            (SamplingRequest(n: Int.max), "n"),
            (SamplingRequest(n: Int.min), "n"),
            (SamplingRequest(logitBias: Dictionary(uniqueKeysWithValues: (0...100).map { (String($0), 1.0) })), "logit_bias"),
            (SamplingRequest(stop: StopSequences(Array(repeating: "s", count: 17))), "stop"),
        ]
        for (request, param) in bad {
            #expect(throws: APIError.self) { try request.parameters(vocabularySize: 100) }
            do {
                _ = try request.parameters(vocabularySize: 100)
            } catch let e as APIError {
                #expect(e.param == param && e.status == .badRequest)
            } catch {
                Issue.record("unexpected \(error)")
            }
        }
    }

    @Test func seedsPerChoiceAreSeedPlusIndex() throws {
        let (p, _, _) = try SamplingRequest(seed: -1, n: 3).parameters(vocabularySize: 100)
        #expect(p.seed == UInt64.max)
        #expect(SamplingRequest.forChoice(p, 0).seed == UInt64.max)
        #expect(SamplingRequest.forChoice(p, 2).seed == 1)  // wraps
        let (unseeded, _, _) = try SamplingRequest().parameters(vocabularySize: 100)
        #expect(SamplingRequest.forChoice(unseeded, 1).seed == nil)
    }

    @Test func topPZeroIsGreedy() throws {
        let (p, _, _) = try SamplingRequest(topP: 0, topK: 50).parameters(vocabularySize: 100)
        #expect(p.topK == 1)
    }

    @Test func maxTokensAgainstTheContext() throws {
        #expect(try OpenAIServer.maxTokens(nil, param: "max_tokens", minimum: 1, promptCount: 10, contextLength: 64,
                                           promptParam: "messages") == 54)
        #expect(try OpenAIServer.maxTokens(54, param: "max_tokens", minimum: 1, promptCount: 10, contextLength: 64,
                                           promptParam: "messages") == 54)
        for value in [55, Int.max] {
            do {
                _ = try OpenAIServer.maxTokens(value, param: "max_tokens", minimum: 1, promptCount: 10, contextLength: 64,
                                               promptParam: "messages")
                Issue.record("accepted \(value)")
            } catch let e as APIError {
                #expect(e.code == "context_length_exceeded" && e.param == "messages")
            }
        }
        #expect(throws: APIError.self) {
            try OpenAIServer.maxTokens(0, param: "max_tokens", minimum: 1, promptCount: 1, contextLength: 64,
                                       promptParam: "messages")
        }
        #expect(throws: APIError.self) {
            try OpenAIServer.maxTokens(nil, param: "max_tokens", minimum: 1, promptCount: 64, contextLength: 64,
                                       promptParam: "messages")
        }
    }
}
