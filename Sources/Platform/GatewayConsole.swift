import Console
import Foundation
import Hummingbird
import Logging
import Server
import ServiceLifecycle

/// The web console on the gateway: static files at /, and what its pages read. Admin keys see every
/// deployment, key and metric and may change replica bounds; other keys may use the playground and
/// read their own usage only.
extension Gateway {
    func addConsoleRoutes(to router: Hummingbird.Router<BasicRequestContext>) {
        assets.addRoutes(to: router)
        router.get("/v1/console/session") { request, _ in
            let key = try await self.authenticate(request)
            return Self.json(.ok, self.session(key))
        }
        router.get("/v1/console/usage") { request, _ in
            let key = try await self.authenticate(request)
            return Self.json(.ok, try await self.usage(key, query: request.uri.queryParameters))
        }
        router.get("/v1/console/metrics") { request, _ in
            _ = try await self.authenticateAdmin(request)
            return Response(status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                            body: .init(byteBuffer: self.feed.historyBody()))
        }
        router.get("/v1/console/metrics/stream") { request, _ in
            _ = try await self.authenticateAdmin(request)
            return try self.feed.streamResponse()
        }
    }

    static func deploymentNotFound(_ name: String) -> APIError {
        APIError(status: .notFound, message: "No deployment named '\(name)'.", type: "invalid_request_error",
                 param: "name", code: "deployment_not_found")
    }

    func session(_ key: APIKey) -> ConsoleSession<GatewaySessionDeployment> {
        ConsoleSession(
            server: "gateway", role: key.admin ? "admin" : "user", open: key == .anonymous,
            key: .init(id: key.id, name: key.name, prefix: key.prefix), status: "ready",
            deployments: config.deployments.map {
                .init(name: $0.name, price: .init(inputPerMillion: $0.inputPricePerMillion,
                                                  outputPerMillion: $0.outputPricePerMillion))
            },
            metricsInterval: feed.interval, canScale: key.admin)
    }

    /// Usage per key and deployment over a period; for admins also the deployments' configured price
    /// against the hardware cost measured over the same period.
    func usage(_ key: APIKey, query: Parameters) async throws -> ConsoleUsage {
        let since = try Self.parseSince(query.get("since"))
        var until = Date().addingTimeInterval(1)
        if let text = query.get("until"), !text.isEmpty {
            guard let d = Self.parseDate(text) else {
                throw APIError.invalidValue("until", "expected a date (2026-11-01), a time (2026-11-01T12:00:00Z) or a Unix timestamp.")
            }
            until = d
        }
        guard until > since else { throw APIError.invalidValue("until", "must be after 'since'.") }
        var keyFilter = query.get("key").flatMap { $0.isEmpty ? nil : $0 }
        if !key.admin {
            if let k = keyFilter, k != key.id { throw APIError.adminKeyRequired }
            keyFilter = key.id
        }
        let deployment = query.get("deployment").flatMap { $0.isEmpty ? nil : $0 }
        let rows = try await ledger.usage(since: since, until: until, keyID: keyFilter, deployment: deployment)
        var hardware: [String: HardwareTime] = [:]
        if key.admin {
            try? await self.hardware.flush(to: ledger)
            hardware = try await ledger.hardware(since: since, until: until)
        }
        let deployments = config.deployments.filter { deployment == nil || $0.name == deployment }.map { d in
            let mine = rows.filter { $0.deployment == d.name }
            let tokens = mine.reduce(0) { $0 + $1.promptTokens + $1.completionTokens }
            let cost = mine.reduce(0) { $0 + $1.cost }
            let hw = hardware[d.name]
            return ConsoleUsage.DeploymentCost(
                deployment: d.name, requests: mine.reduce(0) { $0 + $1.requests },
                promptTokens: mine.reduce(0) { $0 + $1.promptTokens },
                completionTokens: mine.reduce(0) { $0 + $1.completionTokens }, cost: cost,
                inputPerMillion: d.inputPricePerMillion, outputPerMillion: d.outputPricePerMillion,
                configuredPerMillion: tokens > 0 ? cost / Double(tokens) * 1e6 : nil,
                replicaHours: key.admin ? (hw?.replicaSeconds ?? 0) / 3600 : nil,
                hardwareDollars: key.admin ? (hw?.dollars ?? 0) : nil,
                measuredPerMillion: key.admin && tokens > 0 ? (hw?.dollars ?? 0) / Double(tokens) * 1e6 : nil)
        }
        return ConsoleUsage(scope: key.admin ? "all" : "key", keyID: key.admin ? nil : key.id, since: since,
                            until: until, rows: rows, deployments: deployments)
    }
}

/// Writes the hardware time gathered every 10 seconds, and once more when the gateway stops.
struct HardwareLogWriter: Service {
    let gateway: Gateway

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await Task.sleep(for: .seconds(10))
            await flush()
        }
        await flush()
    }

    func flush() async {
        do {
            try await gateway.hardware.flush(to: gateway.ledger)
        } catch {
            gateway.logger.error("hardware time not written: \(error)")
        }
    }
}

/// PATCH /v1/deployments/{name}: `{"replicas": {"min": 0, "max": 3}}` (either may be left out).
struct ScaleRequest: Decodable {
    struct Bounds: Decodable {
        var min: Int?
        var max: Int?
    }

    var replicas: Bounds

    func bounds(current d: Deployment) throws -> (Int, Int) {
        let min = replicas.min ?? d.minReplicas
        let max = replicas.max ?? d.maxReplicas
        guard (0...64).contains(min) else { throw APIError.invalidValue("replicas.min", "must be between 0 and 64.") }
        guard (1...64).contains(max) else { throw APIError.invalidValue("replicas.max", "must be between 1 and 64.") }
        guard max >= min else { throw APIError.invalidValue("replicas.max", "must be >= replicas.min (\(min)).") }
        return (min, max)
    }
}

struct GatewaySessionDeployment: Encodable, Sendable {
    var name: String
    var price: DeploymentStatus.Price
}

struct ConsoleUsage: Encodable {
    /// A deployment over the period: configured price against measured hardware cost per million tokens.
    struct DeploymentCost: Encodable {
        var deployment: String
        var requests: Int
        var promptTokens: Int
        var completionTokens: Int
        var cost: Double
        var inputPerMillion: Double
        var outputPerMillion: Double
        /// What the tokens were billed, per million (input and output prices blended by the traffic).
        var configuredPerMillion: Double?
        var replicaHours: Double?
        var hardwareDollars: Double?
        var measuredPerMillion: Double?

        enum CodingKeys: String, CodingKey {
            case deployment, requests, cost
            case promptTokens = "prompt_tokens", completionTokens = "completion_tokens"
            case inputPerMillion = "input_per_million", outputPerMillion = "output_per_million"
            case configuredPerMillion = "configured_cost_per_million_tokens", replicaHours = "replica_hours"
            case hardwareDollars = "hardware_dollars", measuredPerMillion = "measured_cost_per_million_tokens"
        }
    }

    var object = "console.usage"
    var server = "gateway"
    var scope: String
    var keyID: String?
    var since: Date
    var until: Date
    var rows: [KeyUsage]
    var deployments: [DeploymentCost]

    enum CodingKeys: String, CodingKey {
        case object, server, scope, keyID = "key_id", since, until, rows, deployments
    }
}
