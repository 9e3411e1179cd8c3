import Console
import Engine
import Foundation
import Hummingbird

/// The web console on `swiftlet serve`: its static files at / and the data its pages read. There is
/// one model, no ledger and no prices: the deployments page shows the local engine, the usage page the
/// totals since the server started. The holder of --api-key is the admin; without --api-key the
/// console is as open as the API.
extension OpenAIServer {
    func addConsoleRoutes(to router: Router<ServerRequestContext>) {
        assets.addRoutes(to: router)
        for path in ["/", "/console/{file}"] {
            routes.add(.get, path)
            routes.add(.head, path)
        }
        router.on(.get, "/v1/console/session", in: routes) { _, _ in
            JSONResponse.make(status: .ok, self.consoleSession())
        }
        router.on(.get, "/v1/deployments", in: routes) { _, _ in
            JSONResponse.make(status: .ok, self.localDeployments())
        }
        router.on(.get, "/v1/console/usage", in: routes) { _, _ in
            JSONResponse.make(status: .ok, self.localUsage())
        }
        router.on(.get, "/v1/console/metrics", in: routes) { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                     body: .init(byteBuffer: self.feed.historyBody()))
        }
        router.on(.get, "/v1/console/metrics/stream", in: routes) { _, _ in
            try self.feed.streamResponse()
        }
    }

    /// Engine gauges for the live metrics.
    static func gauges(_ stats: ServiceStats?) -> FeedGauges {
        guard let s = stats else { return FeedGauges() }
        return FeedGauges(queueDepth: s.waiting, running: s.running,
                          kvUsage: s.kvBlocksTotal == 0 ? nil : Double(s.kvBlocksUsed) / Double(s.kvBlocksTotal))
    }

    func consoleSession() -> ConsoleSession<LocalSessionDeployment> {
        let model = self.model
        return ConsoleSession(
            server: "serve", role: "admin", open: configuration.apiKey == nil, key: nil,
            status: model == nil ? "loading" : "ready",
            deployments: model.map { [.init(name: $0.id, aliases: $0.aliases.sorted(), price: nil)] } ?? [],
            metricsInterval: feed.interval, canScale: false)
    }

    func localDeployments() -> LocalDeploymentList {
        guard let model else { return LocalDeploymentList(status: "loading", data: []) }
        let s = model.stats
        let totals = metrics.live.totals
        let load = EngineLoad(s)
        let replica = LocalDeployment.Replica(
            id: "local", state: "ready", pid: Int(ProcessInfo.processInfo.processIdentifier),
            outstanding: s.running + s.waiting, requests: totals.requests, failures: totals.errors, load: load,
            kvUsage: load.kvUsage)
        let engine = LocalDeployment.Engine(
            contextLength: model.contextLength, kvBlockSize: s.kvBlockSize, prefixHitRate: s.prefixHitRate,
            preemptions: s.preemptions, cancelled: s.cancelled, steps: s.steps, tokensComputed: s.tokensComputed)
        return LocalDeploymentList(status: "ready", data: [LocalDeployment(
            name: model.id, model: model.id, aliases: model.aliases.sorted(),
            replicas: .init(min: 1, max: 1, desired: 1, ready: 1, starting: 0), outstanding: s.running + s.waiting,
            engine: engine, facts: model.facts, clusters: [.init(name: "local", supervised: false, replicas: [replica])])])
    }

    func localUsage() -> LocalUsage {
        let totals = metrics.live.totals
        let keyID = configuration.apiKey == nil ? "anonymous" : "api-key"
        let rows = model.map { m in
            [LocalUsage.Row(keyID: keyID, keyName: configuration.apiKey == nil ? "no key" : "--api-key", deployment: m.id,
                            requests: totals.requests, errors: totals.errors, promptTokens: totals.promptTokens,
                            completionTokens: totals.completionTokens)]
        } ?? []
        let iso = ISO8601DateFormatter()
        return LocalUsage(since: iso.string(from: startedAt), until: iso.string(from: Date()), rows: rows)
    }
}

/// The local model as the one deployment of the console's session (`serve` has no prices: price is null).
struct LocalSessionDeployment: Encodable, Sendable {
    struct Price: Encodable, Sendable {
        var inputPerMillion: Double
        var outputPerMillion: Double
        enum CodingKeys: String, CodingKey {
            case inputPerMillion = "input_per_million", outputPerMillion = "output_per_million"
        }
    }

    var name: String
    var aliases: [String]
    var price: Price?
}

/// The local model in the shape of the gateway's /v1/deployments.
struct LocalDeploymentList: Encodable {
    var object = "list"
    var server = "serve"
    var status: String
    var data: [LocalDeployment]
}

struct LocalDeployment: Encodable {
    struct Replicas: Encodable {
        var min, max, desired, ready, starting: Int
    }

    struct Replica: Encodable {
        var id: String
        var state: String
        var pid: Int
        var outstanding: Int
        var requests: Int
        var failures: Int
        var ejected = false
        var load: EngineLoad
        var kvUsage: Double
        enum CodingKeys: String, CodingKey {
            case id, state, pid, outstanding, requests, failures, ejected, load, kvUsage = "kv_usage"
        }
    }

    struct Cluster: Encodable {
        var name: String
        var supervised: Bool
        var replicas: [Replica]
    }

    struct Engine: Encodable {
        var contextLength: Int
        var kvBlockSize: Int
        var prefixHitRate: Double
        var preemptions: Int
        var cancelled: Int
        var steps: Int
        var tokensComputed: Int
        enum CodingKeys: String, CodingKey {
            case contextLength = "context_length", kvBlockSize = "kv_block_size", prefixHitRate = "prefix_hit_rate"
            case preemptions, cancelled, steps, tokensComputed = "tokens_computed"
        }
    }

    var object = "deployment"
    var name: String
    var model: String
    var aliases: [String]
    var replicas: Replicas
    var outstanding: Int
    var engine: Engine
    var facts: ModelFacts
    var clusters: [Cluster]

    enum CodingKeys: String, CodingKey {
        case object, name, model, aliases, replicas, outstanding, engine, clusters, facts = "model_facts"
    }
}

/// Totals since the server started: `serve` keeps no ledger and has no prices.
struct LocalUsage: Encodable {
    struct Row: Encodable {
        var keyID: String
        var keyName: String
        var deployment: String
        var requests: Int
        var errors: Int
        var promptTokens: Int
        var completionTokens: Int
        enum CodingKeys: String, CodingKey {
            case keyID = "key_id", keyName = "key_name", deployment, requests, errors
            case promptTokens = "prompt_tokens", completionTokens = "completion_tokens"
        }
    }

    var object = "console.usage"
    var server = "serve"
    var scope = "all"
    var since: String
    var until: String
    var note = "swiftlet serve keeps no ledger and has no prices: these are the totals since the server started."
    var rows: [Row]
}
