import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOEmbedded
import Platform
import Testing

/// Requests straight to the gateway's router (no sockets, no workers).
struct GatewayClient {
    let responder: RouterResponder<BasicRequestContext>

    struct Reply {
        var status: HTTPResponse.Status
        var headers: HTTPFields
        var body: String

        func json() throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any], "\(body)")
        }

        var error: [String: Any]? { (try? json())?["error"] as? [String: Any] }
    }

    func send(_ method: HTTPRequest.Method, _ path: String, key: String? = nil, body: String? = nil) async throws -> Reply {
        var headers: HTTPFields = [:]
        if let key { headers[.authorization] = "Bearer \(key)" }
        if body != nil { headers[.contentType] = "application/json" }
        let head = HTTPRequest(method: method, scheme: "http", authority: "127.0.0.1", path: path, headerFields: headers)
        let request = Request(head: head, body: RequestBody(buffer: ByteBuffer(string: body ?? "")))
        let context = BasicRequestContext(source: ApplicationRequestContextSource(
            channel: EmbeddedChannel(), logger: Logger(label: "test")))
        let response = try await responder.respond(to: request, context: context)
        final class Sink: @unchecked Sendable { var text = "" }
        struct Writer: ResponseBodyWriter {
            let sink: Sink
            mutating func write(_ buffer: ByteBuffer) async throws { sink.text += String(buffer: buffer) }
            consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
        }
        let sink = Sink()
        try await response.body.write(Writer(sink: sink))
        return Reply(status: response.status, headers: response.headers, body: sink.text)
    }
}

/// A gateway over a fresh database with an admin key and a user key; no services run.
/// Only `let`s, so it may be handed to the task that closes it.
final class ConsoleFixture: @unchecked Sendable {
    let tmp: TemporaryDatabase
    let database: PlatformDatabase
    let gateway: Gateway
    let client: GatewayClient
    let admin: (key: APIKey, secret: String)
    let user: (key: APIKey, secret: String)

    init() throws {
        tmp = try TemporaryDatabase()
        database = try tmp.open()
        let config = try PlatformConfig.parse("""
            clusters: [{name: local, hardware_price_per_hour: 0.36}]
            deployments:
              - name: chat
                model: smollm2
                placement: [local]
                replicas: {min: 0, max: 2}
                price: {input_per_million: 0.5, output_per_million: 1.5}
            """)
        gateway = Gateway(config: config, database: database, clusterToken: "token", modelsDir: nil,
                          logger: Logger(label: "test"))
        client = GatewayClient(responder: gateway.makeRouter().buildResponder())
        admin = try gateway.keys.create(name: "ops", admin: true)
        user = try gateway.keys.create(name: "app")
    }

    func close() async { await gateway.shutdown() }
}

@Suite struct GatewayConsoleTests {
    @Test func onlyAdminKeysReadDeploymentsMetricsAndOthersUsage() async throws {
        let f = try ConsoleFixture()
        defer { Task { await f.close() } }
        let c = f.client
        for path in ["/v1/deployments", "/v1/console/metrics", "/v1/console/metrics/stream"] {
            let none = try await c.send(.get, path)
            #expect(none.status == .unauthorized && none.error?["code"] as? String == "missing_api_key", "\(path)")
            let wrong = try await c.send(.get, path, key: "sk-swiftlet-wrong")
            #expect(wrong.status == .unauthorized && wrong.error?["code"] as? String == "invalid_api_key", "\(path)")
            let user = try await c.send(.get, path, key: f.user.secret)
            #expect(user.status == .forbidden, "\(path)")
            #expect(user.error?["code"] as? String == "admin_key_required" && user.error?["type"] as? String == "permission_error")
        }
        let patch = try await c.send(.patch, "/v1/deployments/chat", key: f.user.secret, body: #"{"replicas": {"max": 3}}"#)
        #expect(patch.status == .forbidden)
        let others = try await c.send(.get, "/v1/console/usage?key=\(f.admin.key.id)", key: f.user.secret)
        #expect(others.status == .forbidden && others.error?["code"] as? String == "admin_key_required")

        let deployments = try await c.send(.get, "/v1/deployments", key: f.admin.secret)
        #expect(deployments.status == .ok)
        let d = try #require((try deployments.json()["data"] as? [[String: Any]])?.first)
        let replicas = try #require(d["replicas"] as? [String: Any])
        #expect(replicas["min"] as? Int == 0 && replicas["max"] as? Int == 2 && replicas["config_max"] as? Int == 2)
        f.gateway.feed.sample()
        let history = try await c.send(.get, "/v1/console/metrics", key: f.admin.secret)
        let samples = try history.json()["data"] as? [Any]
        #expect(history.status == .ok && samples?.count == 1)
    }

    @Test func sessionSaysWhoIsSignedIn() async throws {
        let f = try ConsoleFixture()
        defer { Task { await f.close() } }
        let admin = try await f.client.send(.get, "/v1/console/session", key: f.admin.secret).json()
        #expect(admin["role"] as? String == "admin" && admin["can_scale"] as? Bool == true && admin["server"] as? String == "gateway")
        #expect((admin["key"] as? [String: Any])?["id"] as? String == f.admin.key.id)
        let user = try await f.client.send(.get, "/v1/console/session", key: f.user.secret).json()
        #expect(user["role"] as? String == "user" && user["can_scale"] as? Bool == false)
        let d = try #require((user["deployments"] as? [[String: Any]])?.first)
        #expect(d["name"] as? String == "chat")
        #expect((d["price"] as? [String: Any])?["output_per_million"] as? Double == 1.5)
        let revoked = try f.gateway.keys.revoke(id: f.user.key.id)
        #expect(revoked.isRevoked)
        let after = try await f.client.send(.get, "/v1/console/session", key: f.user.secret)
        #expect(after.status == .unauthorized)
    }

    @Test func adminChangesReplicaBoundsAtRunTime() async throws {
        let f = try ConsoleFixture()
        defer { Task { await f.close() } }
        let c = f.client
        let ok = try await c.send(.patch, "/v1/deployments/chat", key: f.admin.secret, body: #"{"replicas": {"min": 1, "max": 3}}"#)
        #expect(ok.status == .ok, "\(ok.body)")
        let replicas = try #require(try ok.json()["replicas"] as? [String: Any])
        #expect(replicas["min"] as? Int == 1 && replicas["max"] as? Int == 3)
        #expect(replicas["config_min"] as? Int == 0 && replicas["config_max"] as? Int == 2)
        let d = try #require(f.gateway.config.deployment(named: "chat"))
        #expect(f.gateway.autoscaler.effective(d).minReplicas == 1 && f.gateway.autoscaler.effective(d).maxReplicas == 3)
        let onlyMax = try await c.send(.patch, "/v1/deployments/chat", key: f.admin.secret, body: #"{"replicas": {"max": 5}}"#)
        #expect((try onlyMax.json()["replicas"] as? [String: Any])?["min"] as? Int == 1)

        let cases: [(String, String)] = [
            (#"{"replicas": {"min": 4, "max": 2}}"#, "replicas.max"),
            (#"{"replicas": {"min": -1}}"#, "replicas.min"),
            (#"{"replicas": {"max": 0}}"#, "replicas.max"),
            (#"{"replicas": {"max": 65}}"#, "replicas.max"),
            (#"{"replicas": {"min": "two"}}"#, "replicas.min"),
            (#"{"replicas": 3}"#, "replicas"),
            (#"{}"#, "replicas"),
        ]
        for (body, param) in cases {
            let r = try await c.send(.patch, "/v1/deployments/chat", key: f.admin.secret, body: body)
            #expect(r.status == .badRequest, "\(body)")
            #expect(r.error?["param"] as? String == param, "\(body): \(r.body)")
        }
        let notJSON = try await c.send(.patch, "/v1/deployments/chat", key: f.admin.secret, body: "{")
        #expect(notJSON.status == .badRequest && notJSON.error?["code"] as? String == "invalid_json")
        let unknown = try await c.send(.patch, "/v1/deployments/nope", key: f.admin.secret, body: #"{"replicas": {"max": 1}}"#)
        #expect(unknown.status == .notFound && unknown.error?["code"] as? String == "deployment_not_found")
        #expect(f.gateway.autoscaler.effective(d).maxReplicas == 5, "rejected changes leave the bounds alone")
    }

    @Test func usagePerKeyAndDeploymentOverAPeriodWithMeasuredCost() async throws {
        let f = try ConsoleFixture()
        defer { Task { await f.close() } }
        let now = Date()
        let old = now.addingTimeInterval(-3 * 86400)
        func record(_ key: APIKey, _ prompt: Int, _ completion: Int, at date: Date, status: UsageRecord.Status = .completed) async throws {
            try await f.gateway.ledger.record(UsageRecord(
                requestID: "req_\(UUID().uuidString)", keyID: key.id, deployment: "chat", replica: "r1", cluster: "local",
                promptTokens: prompt, completionTokens: completion, timeToFirstToken: 0.1, duration: 0.5, status: status,
                httpStatus: status == .failed ? 502 : 200, cost: Double(prompt) * 0.5e-6 + Double(completion) * 1.5e-6,
                coldStart: false, createdAt: date))
        }
        try await record(f.admin.key, 100, 20, at: now.addingTimeInterval(-60))
        try await record(f.user.key, 300, 100, at: now.addingTimeInterval(-30))
        try await record(f.user.key, 0, 0, at: now.addingTimeInterval(-20), status: .failed)
        try await record(f.user.key, 1000, 1000, at: old)
        // Two replica-hours of hardware at 0.36 $/h over the last minutes, none in the old period.
        f.gateway.hardware.add("chat", replicaSeconds: 7200, dollars: 0.72, at: now.addingTimeInterval(-60))

        let since = ISO8601DateFormatter().string(from: now.addingTimeInterval(-3600))
        let all = try await f.client.send(.get, "/v1/console/usage?since=\(since)", key: f.admin.secret)
        #expect(all.status == .ok, "\(all.body)")
        let body = try all.json()
        #expect(body["scope"] as? String == "all")
        let rows = try #require(body["rows"] as? [[String: Any]])
        #expect(rows.count == 2)
        let userRow = try #require(rows.first { $0["key_id"] as? String == f.user.key.id })
        #expect(userRow["key_name"] as? String == "app" && userRow["requests"] as? Int == 2 && userRow["failed"] as? Int == 1)
        #expect(userRow["prompt_tokens"] as? Int == 300 && userRow["completion_tokens"] as? Int == 100)
        let cost = try #require((body["deployments"] as? [[String: Any]])?.first)
        let tokens = 100 + 20 + 300 + 100
        let billed = (400 * 0.5 + 120 * 1.5) / Double(tokens)
        #expect(abs((cost["configured_cost_per_million_tokens"] as? Double ?? 0) - billed) < 1e-9)
        #expect(abs((cost["measured_cost_per_million_tokens"] as? Double ?? 0) - 0.72 / Double(tokens) * 1e6) < 1e-6)
        #expect(abs((cost["replica_hours"] as? Double ?? 0) - 2) < 1e-9 && cost["input_per_million"] as? Double == 0.5)

        let mine = try await f.client.send(.get, "/v1/console/usage?since=\(since)", key: f.user.secret).json()
        #expect(mine["scope"] as? String == "key" && mine["key_id"] as? String == f.user.key.id)
        #expect((mine["rows"] as? [[String: Any]])?.map { $0["key_id"] as? String } == [f.user.key.id])
        let userCost = try #require((mine["deployments"] as? [[String: Any]])?.first)
        #expect(userCost["measured_cost_per_million_tokens"] == nil && userCost["hardware_dollars"] == nil,
                "hardware costs are for admins")

        let oldSince = ISO8601DateFormatter().string(from: old.addingTimeInterval(-60))
        let oldUntil = ISO8601DateFormatter().string(from: old.addingTimeInterval(60))
        let period = try await f.client.send(.get, "/v1/console/usage?since=\(oldSince)&until=\(oldUntil)", key: f.admin.secret).json()
        let periodRows = try #require(period["rows"] as? [[String: Any]])
        #expect(periodRows.count == 1 && periodRows.first?["prompt_tokens"] as? Int == 1000)
        #expect((period["deployments"] as? [[String: Any]])?.first?["hardware_dollars"] as? Double == 0)

        let backwards = try await f.client.send(.get, "/v1/console/usage?since=\(since)&until=2000-01-01", key: f.admin.secret)
        #expect(backwards.status == .badRequest && backwards.error?["param"] as? String == "until")
        let garbage = try await f.client.send(.get, "/v1/console/usage?since=yesterday", key: f.admin.secret)
        #expect(garbage.status == .badRequest && garbage.error?["param"] as? String == "since")
    }

    @Test func hardwareTimeIsKeptPerMinute() async throws {
        let tmp = try TemporaryDatabase()
        let ledger = Ledger(database: try tmp.open())
        let log = HardwareLog()
        let t = Date(timeIntervalSince1970: 1_800_000_000)
        log.add("a", replicaSeconds: 10, dollars: 0.001, at: t)
        log.add("a", replicaSeconds: 5, dollars: 0.0005, at: t.addingTimeInterval(1))
        log.add("b", replicaSeconds: 0, dollars: 0, at: t)
        try await log.flush(to: ledger)
        log.add("a", replicaSeconds: 1, dollars: 0.0001, at: t.addingTimeInterval(2))
        try await log.flush(to: ledger)
        let got = try await ledger.hardware(since: t.addingTimeInterval(-120), until: t.addingTimeInterval(120))
        #expect(Set(got.keys) == ["a"])
        #expect(abs((got["a"]?.replicaSeconds ?? 0) - 16) < 1e-9 && abs((got["a"]?.dollars ?? 0) - 0.0016) < 1e-12)
        #expect(try await ledger.hardware(since: t.addingTimeInterval(120), until: t.addingTimeInterval(600)).isEmpty)
    }

    @Test func adminFlagIsStoredWithTheKey() throws {
        let tmp = try TemporaryDatabase()
        let keys = KeyStore(database: try tmp.open())
        let (admin, _) = try keys.create(name: "ops", admin: true)
        let (user, _) = try keys.create(name: "app")
        let storedAdmin = try keys.key(id: admin.id)
        let storedUser = try keys.key(id: user.id)
        #expect(storedAdmin?.admin == true && storedUser?.admin == false)
        let listed = try keys.list()
        #expect(Set(listed.filter(\.admin).map(\.id)) == [admin.id])
    }
}

@Suite struct ConsoleDateTests {
    @Test func periodsFromTheBrowserKeepTheirTime() throws {
        // toISOString() of JavaScript: the day-only form must not swallow it as midnight.
        let d = try #require(Gateway.parseDate("2026-11-23T19:54:04.123Z"))
        #expect(abs(d.timeIntervalSince1970 - 1_795_463_644.123) < 1e-3)
        #expect(Gateway.parseDate("2026-11-23T19:54:04Z")?.timeIntervalSince1970 == 1_795_463_644)
        #expect(Gateway.parseDate("2026-11-23")?.timeIntervalSince1970 == 1_795_392_000)
        #expect(Gateway.parseDate("2026-11-23 junk") == nil && Gateway.parseDate("yesterday") == nil)
    }
}
