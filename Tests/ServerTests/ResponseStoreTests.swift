import Engine
import Foundation
import Server
import SwiftletTesting
import Testing

/// Stored responses are bounded: the newest `capacity`, and at most `maxBytes` of their text; the oldest
/// go first, and a GET of an evicted one is 404 like any unknown id.
@Suite struct ResponseStoreTests {
    func create(_ client: RouterClient, _ input: String) async throws -> String {
        let r = try await client.post("/v1/responses", """
            {"model": "smollm2", "input": \(String(reflecting: input)), "max_output_tokens": 2, "temperature": 0}
            """)
        #expect(r.status == .ok, "\(r.body)")
        return try #require(try r.json()["id"] as? String)
    }

    func status(_ client: RouterClient, _ id: String) async throws -> Int {
        Int(try await client.send(.get, "/v1/responses/\(id)").status.code)
    }

    @Test func oldestGoFirstByCountAndByBytes() async throws {
        if TestModel.skipped { return }
        let engine = try TestModel.engine()
        let service = try BatchEngine(engine: engine, options: {
            var o = BatchEngine.Options()
            o.kvCacheBytes = 32 << 20
            return o
        }())
        defer { service.shutdown() }
        let model = ServedModel(id: "test-model", aliases: ["smollm2"], engine: engine, service: service)

        let byCount = ResponseStore(capacity: 2)
        let client = RouterClient(OpenAIServer(model: model, responses: byCount))
        let ids = [try await create(client, "One."), try await create(client, "Two."), try await create(client, "Three.")]
        let codes = [try await status(client, ids[0]), try await status(client, ids[1]), try await status(client, ids[2])]
        #expect(codes == [404, 200, 200])
        #expect(byCount.usage.count == 2)

        let byBytes = ResponseStore(capacity: 100, maxBytes: 3000)
        let small = RouterClient(OpenAIServer(model: model, responses: byBytes))
        let long = String(repeating: "A long line of input text. ", count: 60)  // ~1.6 kB each
        let first = try await create(small, long), second = try await create(small, long)
        let kept = [try await status(small, first), try await status(small, second)]
        #expect(kept == [404, 200])
        #expect(byBytes.usage.count == 1 && byBytes.usage.bytes <= 3000)
    }
}
