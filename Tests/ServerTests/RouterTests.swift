import Engine
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import SwiftletTesting
import Templates
import Server
import Testing

/// What a response body wrote. With `failAfter`, writes past that many fail, as for a client that left.
final class BodySink: Sendable {
    let buffers = NIOLockedValueBox<[ByteBuffer]>([])
    let finished = NIOLockedValueBox(false)
    let failAfter: Int?

    init(failAfter: Int? = nil) { self.failAfter = failAfter }

    var text: String { buffers.withLockedValue { $0.map { String(buffer: $0) }.joined() } }
}

struct ClientWentAway: Error {}

struct SinkWriter: ResponseBodyWriter {
    let sink: BodySink

    mutating func write(_ buffer: ByteBuffer) async throws {
        let count = sink.buffers.withLockedValue { $0.count }
        if let limit = sink.failAfter, count >= limit { throw ClientWentAway() }
        sink.buffers.withLockedValue { $0.append(buffer) }
    }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {
        sink.finished.withLockedValue { $0 = true }
    }
}

/// Sends requests straight to the router, as the HTTP server would (no sockets).
struct RouterClient {
    let responder: RouterResponder<ServerRequestContext>

    init(_ server: OpenAIServer) { responder = server.makeRouter().buildResponder() }

    struct Reply {
        var status: HTTPResponse.Status
        var headers: HTTPFields
        var body: String
        var bodyError: Error?

        func json() throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any], "\(body)")
        }

        var error: [String: Any]? { (try? json())?["error"] as? [String: Any] }
    }

    /// With `clientGone`, the request arrives on a connection that has already closed.
    func send(_ method: HTTPRequest.Method, _ path: String, body: String? = nil, headers: HTTPFields = [:],
              failAfterWrites: Int? = nil, clientGone: Bool = false) async throws -> Reply {
        let head = HTTPRequest(method: method, scheme: "http", authority: "127.0.0.1", path: path, headerFields: headers)
        let request = Request(head: head, body: RequestBody(buffer: ByteBuffer(string: body ?? "")))
        // A connected channel, as a client's; closed before the request for a client that has gone.
        let channel = EmbeddedChannel()
        channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 9), promise: nil)
        if clientGone { channel.close(promise: nil) }
        let context = ServerRequestContext(source: ApplicationRequestContextSource(channel: channel, logger: Logger(label: "test")))
        let response = try await responder.respond(to: request, context: context)
        let sink = BodySink(failAfter: failAfterWrites)
        var bodyError: Error?
        do {
            try await response.body.write(SinkWriter(sink: sink))
        } catch {
            bodyError = error
        }
        return Reply(status: response.status, headers: response.headers, body: sink.text, bodyError: bodyError)
    }

    func post(_ path: String, _ json: String, headers: HTTPFields = [:], failAfterWrites: Int? = nil,
              clientGone: Bool = false) async throws -> Reply {
        var headers = headers
        headers[.contentType] = "application/json"
        return try await send(.post, path, body: json, headers: headers, failAfterWrites: failAfterWrites, clientGone: clientGone)
    }
}

/// Polls `condition` without suspending (see GenerationServiceTests).
func waitUntil(_ what: String, _ condition: () -> Bool) {
    for _ in 0..<120_000 {
        if condition() { return }
        usleep(1000)
    }
    Issue.record("never happened: \(what)")
}

/// A server on the real model with its own engine thread (stopped by `shutdown`), running one sequence
/// at a time with room for 4 waiting ones.
func modelServer(apiKey: String? = nil) throws -> (OpenAIServer, BatchEngine, InferenceEngine)? {
    if TestModel.skipped { return nil }
    let engine = try TestModel.engine()
    var options = BatchEngine.Options()
    options.kvCacheBytes = 256 << 20
    options.maxSequences = 1
    options.maxWaiting = 4
    let service = try BatchEngine(engine: engine, options: options)
    let server = OpenAIServer(configuration: ServerConfiguration(apiKey: apiKey),
                              model: ServedModel(id: "test-model", aliases: ["smollm2"], engine: engine, service: service))
    return (server, service, engine)
}

@Suite struct RoutingTests {
    @Test func healthReadyAndModelsWhileLoading() async throws {
        let client = RouterClient(OpenAIServer())
        let health = try await client.send(.get, "/health")
        #expect(health.status == .ok && health.body == #"{"status":"ok"}"#)
        let ready = try await client.send(.get, "/ready")
        #expect(ready.status == .serviceUnavailable)
        let models = try await client.send(.get, "/v1/models")
        #expect(models.status == .serviceUnavailable && models.error?["code"] as? String == "model_not_ready")
        let chat = try await client.post("/v1/chat/completions", #"{"model": "m", "messages": [{"role": "user", "content": "hi"}]}"#)
        #expect(chat.status == .serviceUnavailable)
        let metrics = try await client.send(.get, "/metrics")
        #expect(metrics.status == .ok && metrics.body.contains("swiftlet_running_sequences 0"))
        #expect(metrics.body.contains(#"swiftlet_http_requests_total{endpoint="/ready",status="503"} 1"#))
    }

    @Test func unknownRoutesAre404AndWrongMethods405InOpenAIShape() async throws {
        let client = RouterClient(OpenAIServer())
        let cases: [(HTTPRequest.Method, String, HTTPResponse.Status, String?)] = [
            (.get, "/v1/nope", .notFound, nil), (.post, "/v1/models/x/y", .notFound, nil),
            (.get, "/v1/chat/completions", .methodNotAllowed, "POST"), (.put, "/v1/completions", .methodNotAllowed, "POST"),
            (.delete, "/health", .methodNotAllowed, "GET"), (.post, "/v1/models/smollm2", .methodNotAllowed, "GET"),
            (.post, "/console/app.js", .methodNotAllowed, "GET, HEAD"), (.get, "/console/nope.js", .notFound, nil),
        ]
        for (method, path, status, allow) in cases {
            let r = try await client.send(method, path)
            #expect(r.status == status, "\(method) \(path)")
            #expect(r.headers[.allow] == allow, "\(method) \(path)")
            let error = try #require(r.error)
            #expect(Set(error.keys) == ["message", "type", "param", "code"])
            #expect((error["message"] as? String)?.contains(path) == true)
            #expect(error["code"] as? String == (status == .notFound ? "unknown_url" : "method_not_allowed"))
        }
        let metrics = try await client.send(.get, "/metrics")
        #expect(metrics.body.contains(#"swiftlet_errors_total{status="405",code="method_not_allowed"} 5"#))
    }

    @Test func keysAreCheckedOnV1Only() async throws {
        let client = RouterClient(OpenAIServer(configuration: ServerConfiguration(apiKey: "k")))
        let missing = try await client.send(.get, "/v1/models")
        #expect(missing.status == .unauthorized && missing.error?["code"] as? String == "missing_api_key")
        let wrong = try await client.send(.get, "/v1/models", headers: [.authorization: "Bearer x"])
        #expect(wrong.status == .unauthorized && wrong.error?["code"] as? String == "invalid_api_key")
        let right = try await client.send(.get, "/v1/models", headers: [.authorization: "Bearer k"])
        #expect(right.status == .serviceUnavailable)  // past the key check; no model yet
        #expect(try await client.send(.get, "/health").status == .ok)
        #expect(try await client.send(.get, "/metrics").status == .ok)
    }

    @Test func bodiesOverTheLimitAre413() async throws {
        let client = RouterClient(OpenAIServer(configuration: ServerConfiguration(maxBodyBytes: 64)))
        let body = #"{"model": "m", "messages": [{"role": "user", "content": "\#(String(repeating: "x", count: 100))"}]}"#
        let r = try await client.post("/v1/chat/completions", body)
        #expect(r.status == .contentTooLarge && r.error?["code"] as? String == "request_too_large")
    }

    @Test func internalErrorsDoNotLeak() async throws {
        struct Secret: Error, CustomStringConvertible { var description: String { "secret-internal-detail" } }
        let router = Router(context: ServerRequestContext.self)
        router.add(middleware: APIMiddleware(server: OpenAIServer()))
        router.get("/boom") { _, _ -> Response in throw Secret() }
        let client = RouterClient(responder: router.buildResponder())
        let r = try await client.send(.get, "/boom")
        #expect(r.status == .internalServerError)
        #expect(!r.body.contains("secret") && r.error?["type"] as? String == "server_error")
    }
}

extension RouterClient {
    init(responder: RouterResponder<ServerRequestContext>) { self.responder = responder }
}

@Suite(.serialized) struct ModelRoutingTests {
    @Test func chatCompletionEqualsTheEngineAndCountsUsage() async throws {
        guard let (server, service, engine) = try modelServer() else { return }
        defer { service.shutdown() }
        let client = RouterClient(server)
        let r = try await client.post("/v1/chat/completions", """
            {"model": "smollm2", "messages": [{"role": "user", "content": "Say hi."}], "temperature": 0, "max_tokens": 10}
            """)
        #expect(r.status == .ok && r.headers[.contentType] == "application/json")
        let completion = try JSONDecoder().decode(ChatCompletion.self, from: Data(r.body.utf8))
        let prompt = try engine.chatTokens([ChatMessage(role: "user", content: "Say hi.")])
        let direct = try engine.generate(GenerationRequest(promptTokens: prompt, maxTokens: 10))
        #expect(completion.model == "test-model")
        #expect(completion.choices.first?.message.content == direct.text)
        #expect(completion.usage == Usage(promptTokens: prompt.count, completionTokens: direct.tokens.count, cachedTokens: 0))
        let metrics = try await client.send(.get, "/metrics")
        #expect(metrics.body.contains("swiftlet_prompt_tokens_total \(prompt.count)"))
    }

    @Test func streamedChunksAreServerSentEvents() async throws {
        guard let (server, service, _) = try modelServer() else { return }
        defer { service.shutdown() }
        let client = RouterClient(server)
        let body = """
            {"model": "test-model", "prompt": "The capital of France is", "temperature": 0, "max_tokens": 6, "stream": true,
             "stream_options": {"include_usage": true}}
            """
        let r = try await client.post("/v1/completions", body)
        #expect(r.headers[.contentType] == "text/event-stream" && r.headers[.cacheControl] == "no-cache")
        let events = r.body.components(separatedBy: "\n\n").dropLast()
        #expect(r.body.hasSuffix("\n\n") && events.last == "data: [DONE]")
        let chunks = try events.dropLast().map {
            try JSONDecoder().decode(Completion.self, from: Data($0.dropFirst("data: ".count).utf8))
        }
        let plain = try JSONDecoder().decode(Completion.self, from: Data(try await client.post(
            "/v1/completions", #"{"model": "test-model", "prompt": "The capital of France is", "temperature": 0, "max_tokens": 6}"#
        ).body.utf8))
        #expect(chunks.compactMap { $0.choices.first?.text }.joined() == plain.choices[0].text)
        #expect(chunks.dropLast().last?.choices.first?.finishReason == "length")
        #expect(chunks.last?.choices.isEmpty == true)
        // Token counts agree (the later request may take the prompt's first block from the prefix cache).
        let usage = try #require(chunks.last?.usage)
        #expect(usage.promptTokens == plain.usage?.promptTokens && usage.completionTokens == plain.usage?.completionTokens)
    }

    @Test func aClientThatGoesAwayCancelsItsSequence() async throws {
        guard let (server, service, engine) = try modelServer() else { return }
        defer { service.shutdown() }
        let client = RouterClient(server)
        do {
            // A long sequence holds the generation thread, so the request's sequence usually waits behind it
            // and leaves the queue; if this test is starved of threads long enough, it runs and is stopped at
            // its next token. Either way it is cancelled, not run to its 4000 tokens. (Disconnects after some
            // tokens are in Tests/api, against the real server.)
            let blocker = try service.submit(GenerationRequest(
                promptTokens: engine.encode("Count: 1, 2, 3,"), maxTokens: 4000, ignoreEOS: true))
            waitUntil("the blocker to start") { service.stats.running == 1 }
            let r = try await client.post("/v1/chat/completions", """
                {"model": "test-model", "messages": [{"role": "user", "content": "Tell a long story."}], "max_tokens": 4000,
                 "ignore_eos": true, "stream": true}
                """, failAfterWrites: 0)
            #expect(r.status == .ok && r.bodyError is CancellationError)
            waitUntil("the request's sequence to be cancelled") { service.stats.cancelled == 1 }
            let metrics = try await client.send(.get, "/metrics")
            #expect(metrics.body.contains("swiftlet_sequences_cancelled_total 1"))
            #expect(!metrics.body.contains("swiftlet_sequences_total"))
            withExtendedLifetime(blocker) {}
        }
        waitUntil("the service to be idle") { service.stats.running == 0 && service.stats.waiting == 0 }
    }

    @Test func aFullQueueGives429AndQueuesNoPartOfTheRequest() async throws {
        guard let (server, service, engine) = try modelServer() else { return }
        defer { service.shutdown() }
        let long = GenerationRequest(promptTokens: engine.encode("Count: 1, 2, 3,"), maxTokens: 4000, ignoreEOS: true)
        do {
            let running = try service.submit(long)
            waitUntil("the blocker to start") { service.stats.running == 1 }
            let waiting = try (0..<3).map { _ in try service.submit(long) }  // 3 of the 4 places taken
            // Two choices: the first takes the last place, the second is refused, and the first leaves again.
            let client = RouterClient(server)
            let r = try await client.post("/v1/completions", #"{"model": "test-model", "prompt": "Hi", "max_tokens": 2, "n": 2}"#)
            #expect(r.status == .tooManyRequests && r.headers[.retryAfter] == "1")
            #expect(r.error?["type"] as? String == "rate_limit_error")
            waitUntil("the admitted choice to leave again") { service.stats.waiting == 3 && service.stats.cancelled == 1 }
            withExtendedLifetime((running, waiting)) {}
        }
        waitUntil("the service to be idle") { service.stats.running == 0 && service.stats.waiting == 0 }
    }

    @Test func badRequestsNeverReachTheEngine() async throws {
        guard let (server, service, _) = try modelServer() else { return }
        defer { service.shutdown() }
        let client = RouterClient(server)
        let cases: [(String, HTTPResponse.Status, String?)] = [
            (#"{"model": "test-model", "messages": []}"#, .badRequest, "messages"),
            (#"{"model": "test-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 99999999}"#,
             .badRequest, "messages"),
            (#"{"model": "other", "messages": [{"role": "user", "content": "hi"}]}"#, .notFound, "model"),
            (#"{"model": "test-model", "messages": [{"role": "user", "content": "hi"}], "n": 17}"#, .badRequest, "n"),
            (#"{"model": "test-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e30}"#,
             .badRequest, "max_tokens"),
        ]
        for (body, status, param) in cases {
            let r = try await client.post("/v1/chat/completions", body)
            #expect(r.status == status, "\(body): \(r.body)")
            #expect(r.error?["param"] as? String == param, "\(body): \(r.body)")
        }
        let stats = service.stats
        #expect(stats.running == 0 && stats.waiting == 0 && stats.cancelled == 0 && stats.steps == 0)
        let metrics = try await client.send(.get, "/metrics")
        #expect(metrics.body.contains(#"swiftlet_errors_total{status="400",code="context_length_exceeded"} 1"#))
    }
}
