import Console
import Engine
import Foundation
import HTTPTypes
import Server
import SwiftletTesting
import Testing

/// The console on `swiftlet serve`: public static files, data under /v1/ behind --api-key.
@Suite struct ServeConsoleTests {
    @Test func staticFilesArePublicWithTheirContentTypes() async throws {
        let client = RouterClient(OpenAIServer(configuration: ServerConfiguration(apiKey: "k")))
        let index = try await client.send(.get, "/")
        #expect(index.status == .ok && index.headers[.contentType] == "text/html; charset=utf-8")
        #expect(index.body.contains("Swiftlet console"))
        let js = try await client.send(.get, "/console/app.js")
        #expect(js.status == .ok && js.headers[.contentType] == "text/javascript; charset=utf-8")
        let etag = try #require(js.headers[.eTag])
        let again = try await client.send(.get, "/console/app.js", headers: [.ifNoneMatch: etag])
        #expect(again.status == .notModified && again.body.isEmpty)
        let missing = try await client.send(.get, "/console/nope.js")
        #expect(missing.status == .notFound && missing.error?["code"] as? String == "unknown_url")
    }

    @Test func consoleDataNeedsTheKey() async throws {
        let client = RouterClient(OpenAIServer(configuration: ServerConfiguration(apiKey: "k")))
        for path in ["/v1/console/session", "/v1/deployments", "/v1/console/usage", "/v1/console/metrics",
                     "/v1/console/metrics/stream"] {
            let anonymous = try await client.send(.get, path)
            #expect(anonymous.status == .unauthorized, "\(path)")
            #expect(anonymous.error?["code"] as? String == "missing_api_key")
            let wrong = try await client.send(.get, path, headers: [.authorization: "Bearer nope"])
            #expect(wrong.status == .unauthorized && wrong.error?["code"] as? String == "invalid_api_key", "\(path)")
        }
        let session = try await client.send(.get, "/v1/console/session", headers: [.authorization: "Bearer k"])
        #expect(session.status == .ok)
        let s = try session.json()
        #expect(s["server"] as? String == "serve" && s["role"] as? String == "admin" && s["open"] as? Bool == false)
        #expect(s["status"] as? String == "loading" && (s["deployments"] as? [Any])?.isEmpty == true)
        let deployments = try await client.send(.get, "/v1/deployments", headers: [.authorization: "Bearer k"])
        #expect(try deployments.json()["status"] as? String == "loading")
    }

    @Test func withoutAKeyTheConsoleIsOpen() async throws {
        let server = OpenAIServer()
        let client = RouterClient(server)
        let s = try await client.send(.get, "/v1/console/session").json()
        #expect(s["open"] as? Bool == true && s["role"] as? String == "admin" && s["can_scale"] as? Bool == false)
        server.feed.sample()
        let history = try await client.send(.get, "/v1/console/metrics").json()
        #expect((history["data"] as? [Any])?.count == 1)
        let usage = try await client.send(.get, "/v1/console/usage").json()
        #expect(usage["server"] as? String == "serve" && (usage["rows"] as? [Any])?.isEmpty == true)
    }

    @Test func metricsStreamStartsWithTheHistory() async throws {
        let server = OpenAIServer()
        server.feed.sample()
        let response = Task { try await RouterClient(server).send(.get, "/v1/console/metrics/stream") }
        for _ in 0..<500 where server.feed.subscriberCount == 0 { try await Task.sleep(for: .milliseconds(10)) }
        server.feed.sample()
        server.feed.close()
        let reply = try await response.value
        #expect(reply.status == .ok && reply.headers[.contentType] == "text/event-stream")
        #expect(reply.body.contains("event: history\ndata: [{"))
        #expect(reply.body.components(separatedBy: "\n\ndata: {").count == 2, "\(reply.body)")
        let closed = try await RouterClient(server).send(.get, "/v1/console/metrics/stream")
        #expect(closed.status == .serviceUnavailable && closed.error?["code"] as? String == "shutting_down")
    }
}

@Suite struct ServeConsoleWithModelTests {
    @Test func deploymentsUsageAndMetricsFollowRealRequests() async throws {
        if TestModel.skipped { return }
        let engine = try TestModel.engine()
        var options = BatchEngine.Options()
        options.kvCacheBytes = 64 << 20
        let service = try BatchEngine(engine: engine, options: options)
        defer { service.shutdown() }
        // Latencies kept for an hour: on a loaded machine the request can end more than the default minute ago.
        let server = OpenAIServer(metrics: ServerMetrics(live: LiveMetrics(window: 3600)),
                                  model: ServedModel(id: "test-model", aliases: ["smollm2"], engine: engine, service: service))
        let client = RouterClient(server)
        server.feed.sample()
        let r = try await client.post("/v1/chat/completions", """
            {"model": "smollm2", "messages": [{"role": "user", "content": "Say hi."}], "temperature": 0, "max_tokens": 5}
            """)
        #expect(r.status == .ok)
        let usage = try #require(try r.json()["usage"] as? [String: Any])
        let completion = try #require(usage["completion_tokens"] as? Int)
        let prompt = try #require(usage["prompt_tokens"] as? Int)
        let bad = try await client.post("/v1/chat/completions", #"{"model": "smollm2", "messages": []}"#)
        #expect(bad.status == .badRequest)

        let snapshot = server.feed.sample()
        #expect(snapshot.totalCompletionTokens == completion && snapshot.totalRequests == 2 && snapshot.totalErrors == 1)
        #expect(snapshot.errors == 1 && snapshot.outputTokensPerSecond > 0)
        #expect(snapshot.ttft?.count == 1 && (completion < 2 || snapshot.tpot?.count == 1))

        let session = try await client.send(.get, "/v1/console/session").json()
        let names = (session["deployments"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
        #expect(names == ["test-model"] && session["status"] as? String == "ready")

        let list = try await client.send(.get, "/v1/deployments").json()
        let d = try #require((list["data"] as? [[String: Any]])?.first)
        #expect(d["name"] as? String == "test-model")
        let replica = try #require(((d["clusters"] as? [[String: Any]])?.first?["replicas"] as? [[String: Any]])?.first)
        #expect(replica["state"] as? String == "ready" && replica["requests"] as? Int == 2 && replica["failures"] as? Int == 1)
        let load = try #require(replica["load"] as? [String: Any])
        #expect((load["kv_blocks_total"] as? Int ?? 0) > 0 && load["running"] as? Int == 0)
        #expect((d["engine"] as? [String: Any])?["kv_block_size"] as? Int == 16)

        let rows = try #require(try await client.send(.get, "/v1/console/usage").json()["rows"] as? [[String: Any]])
        #expect(rows.count == 1)
        #expect(rows.first?["completion_tokens"] as? Int == completion && rows.first?["prompt_tokens"] as? Int == prompt)
        #expect(rows.first?["deployment"] as? String == "test-model" && rows.first?["key_id"] as? String == "anonymous")
    }
}
