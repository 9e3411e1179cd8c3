import Foundation
import FuzzSupport
import Grammar
@testable import Server

// The request decoders: every body is decoded as a chat and as a completions request, exactly as the
// server does (UTF-8 check, JSONDecoder, key order of schemas restored, the parameter named on
// failure), then `tools`, `tool_choice` and `response_format` are checked and compiled to grammars.
// Errors are fine: they must be APIErrors (400s), whose bodies encode. The tool-call scanner reads the
// same bytes as model output.

func handle(_ error: Error) {
    guard let api = APIError.from(error) else { fatalError("not an API error: \(String(reflecting: error))") }
    check((400..<500).contains(Int(api.status.code)), "status \(api.status.code) for \(api.message)")
    _ = JSONResponse.encode(api.body)
}

runFuzzer { input in
    let data = Data(input)
    do {
        let chat = try OpenAIServer.decodeJSON(ChatCompletionRequest.self, from: data)
        _ = try OpenAIServer.replyShape(chat)
    } catch { handle(error) }
    do {
        let completion = try OpenAIServer.decodeJSON(CompletionRequest.self, from: data)
        _ = try OpenAIServer.constraint(for: completion.responseFormat)
    } catch { handle(error) }
    _ = ToolCallScanner.scan(String(decoding: input, as: UTF8.self))
}
