import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Platform
import Server
import Testing

/// A replica's HTTP side on 127.0.0.1 that answers every chat stream with the same events: the
/// replica's failure modes that a real worker cannot be made to show on demand (its own error event
/// before any token, a connection cut after the first token), over a real socket to the gateway.
final class ScriptedReplica: Sendable {
    let url: String
    let task: Task<Void, Error>

    struct Broken: Error {}

    /// `events` are the SSE data lines, in order; with `cut` the connection drops after them.
    /// Streams open at once, and the most seen; with `barrier`, each stream waits (at most 20 s) until
    /// that many are open before it answers.
    let open: OpenStreams

    static func start(events: [String], promptTokens: Int?, cut: Bool, pause: Duration = .zero,
                      barrier: Int = 0) async throws -> ScriptedReplica {
        let router = Hummingbird.Router(context: BasicRequestContext.self)
        let open = OpenStreams()
        router.post("/v1/chat/completions") { _, _ in
            open.opened()
            let deadline = ContinuousClock.now + .seconds(20)
            while open.most < barrier, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            defer { open.closed() }
            var headers: HTTPFields = [.contentType: "text/event-stream"]
            if let promptTokens { headers[HTTPField.Name(OpenAIServer.promptTokensHeader)!] = String(promptTokens) }
            return Response(status: .ok, headers: headers, body: ResponseBody { writer in
                for e in events {
                    try await writer.write(ByteBuffer(string: "data: \(e)\n\n"))
                    if pause > .zero { try await Task.sleep(for: pause) }
                }
                if cut {
                    // Closing the channel drops writes still queued in it: give them time to reach the
                    // socket, so the cut comes after the events as it does when a replica dies.
                    try await Task.sleep(for: .milliseconds(100))
                    throw Broken()
                }
                try await writer.finish(nil)
            })
        }
        let (ports, bound) = AsyncStream.makeStream(of: Int.self)
        var logger = Logger(label: "scripted-replica")
        logger.logLevel = .critical  // stopping it by cancellation is not news
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in bound.yield(channel.localAddress?.port ?? 0) },
            logger: logger)
        let task = Task { try await app.runService(gracefulShutdownSignals: []) }
        var it = ports.makeAsyncIterator()
        let port = try #require(await it.next())
        return ScriptedReplica(url: "http://127.0.0.1:\(port)", task: task, open: open)
    }

    init(url: String, task: Task<Void, Error>, open: OpenStreams) {
        self.url = url
        self.task = task
        self.open = open
    }

    func stop() async {
        task.cancel()
        _ = try? await task.value
    }

    static let role = #"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}"#
    static let token = #"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hello"}}],"usage":null}"#
    static let finish = #"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#
    static let usage = #"{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":37,"completion_tokens":1,"total_tokens":38}}"#
    static let error = #"{"error":{"message":"the engine failed","type":"server_error","param":null,"code":null}}"#
}

final class OpenStreams: @unchecked Sendable {
    private let lock = NSLock()
    private var now = 0
    private var peak = 0
    func opened() { lock.withLock { now += 1; peak = max(peak, now) } }
    func closed() { lock.withLock { now -= 1 } }
    var most: Int { lock.withLock { peak } }
}

/// Gateway over scripted replicas registered by hand (placement east, then west); no services run.
final class RelayFixture: @unchecked Sendable {
    let tmp: TemporaryDatabase
    let gateway: Gateway
    let client: GatewayClient
    var replicas: [ScriptedReplica] = []

    init() throws {
        tmp = try TemporaryDatabase()
        let config = try PlatformConfig.parse("""
            gateway: {require_api_key: false, retries: 2, cold_start_timeout: 1s}
            clusters: [{name: east}, {name: west}]
            deployments:
              - name: chat
                model: smollm2
                placement: [east, west]
                replicas: {min: 0, max: 2}
                price: {input_per_million: 1.0, output_per_million: 2.0}
            """)
        gateway = Gateway(config: config, database: try tmp.open(), clusterToken: "token", modelsDir: nil,
                          logger: Logger(label: "test"))
        client = GatewayClient(responder: gateway.makeRouter().buildResponder())
    }

    @discardableResult
    func add(_ id: String, cluster: String, events: [String], promptTokens: Int? = 37, cut: Bool = false,
             pause: Duration = .zero, barrier: Int = 0) async throws -> ScriptedReplica {
        let r = try await ScriptedReplica.start(events: events, promptTokens: promptTokens, cut: cut, pause: pause,
                                                barrier: barrier)
        replicas.append(r)
        gateway.registry.register(id: id, deployment: "chat", cluster: cluster, url: r.url, pid: nil, state: .ready,
                                  load: .init())
        return r
    }

    func stream() async throws -> GatewayClient.Reply {
        try await client.send(.post, "/v1/chat/completions", body: #"{"model":"chat","messages":[{"role":"user","content":"Hi"}],"stream":true}"#)
    }

    func row(_ reply: GatewayClient.Reply) throws -> UsageRecord {
        let id = try #require(reply.headers[HTTPField.Name("X-Request-Id")!])
        return try #require(try gateway.ledger.records().first { $0.requestID == id })
    }

    func close() async {
        for r in replicas { await r.stop() }
        await gateway.shutdown()
    }
}

@Suite(.serialized) struct GatewayRelayTests {
    /// A replica's error event before any token is a failure like a refused connection: the request
    /// goes to the next replica, and the client sees one clean, completed stream.
    @Test func errorEventBeforeAnyTokenIsRetriedElsewhere() async throws {
        let f = try RelayFixture()
        try await f.add("east-1", cluster: "east", events: [ScriptedReplica.role, ScriptedReplica.error, "[DONE]"])
        try await f.add("west-1", cluster: "west", events: [ScriptedReplica.role, ScriptedReplica.token, ScriptedReplica.finish,
                                                           ScriptedReplica.usage, "[DONE]"])
        let reply = try await f.stream()
        #expect(reply.status == .ok)
        #expect(reply.headers[HTTPField.Name("X-Swiftlet-Replica")!] == "west-1", "retried on the other replica")
        #expect(reply.body.contains("Hello") && !reply.body.contains("the engine failed"), "\(reply.body)")
        let row = try f.row(reply)
        #expect(row.status == .completed && row.replica == "west-1")
        #expect(row.promptTokens == 37 && row.completionTokens == 1)
        #expect(f.gateway.registry.replica("east-1")?.ejected == false, "a replica that answers is not ejected")
        await f.close()
    }

    /// With no other replica, the request fails and is billed as failed: never `completed` with 0 tokens.
    @Test func erroredRequestIsNeverStoredAsCompleted() async throws {
        let f = try RelayFixture()
        try await f.add("east-1", cluster: "east", events: [ScriptedReplica.role, ScriptedReplica.error, "[DONE]"])
        let reply = try await f.stream()
        #expect(reply.status.code >= 500, "\(reply.body)")
        #expect(reply.error != nil)
        let rows = try f.gateway.ledger.records()
        #expect(rows.count == 1 && rows[0].status == .failed && rows[0].totalTokens == 0)
        await f.close()
    }

    /// An error event after output began is relayed, and the row says the response is incomplete.
    @Test func errorEventAfterOutputIsInterrupted() async throws {
        let f = try RelayFixture()
        try await f.add("east-1", cluster: "east", events: [ScriptedReplica.role, ScriptedReplica.token,
                                                           ScriptedReplica.error, "[DONE]"])
        let reply = try await f.stream()
        #expect(reply.status == .ok && reply.body.contains("the engine failed") && reply.body.hasSuffix("data: [DONE]\n\n"))
        let row = try f.row(reply)
        #expect(row.status == .interrupted && row.promptTokens == 37 && row.completionTokens == 1)
        await f.close()
    }

    /// A stream cut after its first token is billed for the prompt the replica took (its header) and
    /// the tokens delivered; the client gets an error event and [DONE].
    @Test func brokenStreamBillsThePrompt() async throws {
        let f = try RelayFixture()
        try await f.add("east-1", cluster: "east", events: [ScriptedReplica.role, ScriptedReplica.token], cut: true)
        let reply = try await f.stream()
        #expect(reply.status == .ok)
        #expect(reply.body.contains("\"replica_failed\"") && reply.body.hasSuffix("data: [DONE]\n\n"), "\(reply.body)")
        let row = try f.row(reply)
        #expect(row.status == .interrupted)
        #expect(row.promptTokens == 37 && row.completionTokens == 1)
        #expect(abs(row.cost - (37 * 1.0 + 1 * 2.0) / 1e6) < 1e-12)
        await f.close()
    }

    /// Draining: new requests get 503 `shutting_down` and /ready 503, while the stream in flight runs to
    /// its end before the drain returns (and stops the workers).
    @Test func drainWaitsForStreamsInFlightAndRefusesNewOnes() async throws {
        let f = try RelayFixture()
        try await f.add("east-1", cluster: "east", events: [ScriptedReplica.role, ScriptedReplica.token, ScriptedReplica.token,
                                                           ScriptedReplica.finish, ScriptedReplica.usage, "[DONE]"],
                        pause: .milliseconds(100))
        let inFlight = Task { try await f.stream() }
        while f.gateway.registry.replica("east-1")?.outstanding == 0 { try await Task.sleep(for: .milliseconds(5)) }
        await f.gateway.drain(grace: 60)
        // The stream's ledger row is written before its last bytes: the drain waited for it.
        #expect(try f.gateway.ledger.records().map(\.status) == [.completed])
        let reply = try await inFlight.value
        #expect(reply.status == .ok && reply.body.hasSuffix("data: [DONE]\n\n"))
        let refused = try await f.stream()
        #expect(refused.status == .serviceUnavailable && refused.error?["code"] as? String == "shutting_down")
        #expect(try await f.client.send(.get, "/ready").status == .serviceUnavailable)
        #expect(try await f.client.send(.get, "/health").status == .ok)
        await f.close()
    }

    /// Every stream holds its own connection to the replica: 24 at once all reach it together (the HTTP
    /// client's default pool held 8 per host and queued the rest where routing could not see them).
    @Test func manyStreamsToOneReplicaAreNotQueuedInTheClient() async throws {
        let f = try RelayFixture()
        let streams = 24
        let replica = try await f.add("east-1", cluster: "east", events: [ScriptedReplica.role, ScriptedReplica.token,
                                                                         ScriptedReplica.finish, ScriptedReplica.usage, "[DONE]"],
                                      barrier: streams)
        let replies = try await withThrowingTaskGroup(of: GatewayClient.Reply.self) { group in
            for _ in 0..<streams { group.addTask { try await f.stream() } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(replica.open.most == streams)
        #expect(replies.allSatisfy { $0.status == .ok && $0.body.hasSuffix("data: [DONE]\n\n") })
        #expect(try f.gateway.ledger.records().filter { $0.status == .completed }.count == streams)
        await f.close()
    }

    @Test func periodsOutsideTheCalendarAreRefused() {
        for text in ["-1e308", "1e308", "-1", "253402300800", "9223372036854775807", "nan", "inf", "10000-01-01", "0000-01-01"] {
            #expect(Gateway.parseDate(text) == nil, "\(text)")
        }
        #expect(Gateway.parseDate("0") == Date(timeIntervalSince1970: 0))
        #expect(Gateway.parseDate("2026-11-01") != nil && Gateway.parseDate("9999-12-31T23:59:59Z") != nil)
    }
}
