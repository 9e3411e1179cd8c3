import AsyncHTTPClient
import Console
import Engine
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Server
import ServiceLifecycle

/// Cold starts of a deployment: request arrival (no replica ready) to its first token.
public struct ColdStartStats: Sendable, Equatable, Codable {
    public var count = 0
    public var lastSeconds: Double?
    public var meanSeconds: Double?
    public var maxSeconds: Double?

    enum CodingKeys: String, CodingKey {
        case count, lastSeconds = "last_seconds", meanSeconds = "mean_seconds", maxSeconds = "max_seconds"
    }

    mutating func add(_ seconds: Double) {
        meanSeconds = ((meanSeconds ?? 0) * Double(count) + seconds) / Double(count + 1)
        count += 1
        lastSeconds = seconds
        maxSeconds = max(maxSeconds ?? 0, seconds)
    }
}

/// The platform's front door: the OpenAI API for every deployment, routed to replicas with retries,
/// failover and cold starts; keys, limits and the usage ledger; the replicas' registration API; and
/// the deployments' state and costs.
public final class Gateway: Sendable {
    public let config: PlatformConfig
    public let clusterToken: String
    public let registry: ReplicaRegistry
    public let keys: KeyStore
    public let ledger: Ledger
    /// Stored Responses API responses, per key (`previous_response_id`, GET and DELETE).
    public let responses: ResponseArchive
    private let lastPrune = NIOLockedValueBox(0.0)
    public let limiter = RateLimiter()
    public let costs: CostMeter
    public let metrics = GatewayMetrics()
    public let supervisor: Supervisor
    public let autoscaler: Autoscaler
    /// Replica time per minute, written to the database for measured costs over any period.
    public let hardware = HardwareLog()
    /// The console's static files, served at / and /console/.
    public let assets: ConsoleAssets
    /// Samples for the console's live charts; run it in a group that shuts it down before the gateway.
    public let feed: MetricsFeed
    let client: HTTPClient
    let logger: Logger
    let maxBodyBytes = 4 << 20
    /// Upper bound on one upstream request, streaming included.
    let upstreamTimeout: TimeAmount = .minutes(30)
    private let coldStarts = NIOLockedValueBox<[String: ColdStartStats]>([:])
    let traffic = NIOLockedValueBox(Traffic())

    public init(config: PlatformConfig, database: PlatformDatabase, clusterToken: String, modelsDir: String?,
                logger: Logger, assets: ConsoleAssets = .load()) {
        self.assets = assets
        self.config = config
        self.clusterToken = clusterToken
        self.logger = logger
        registry = ReplicaRegistry(unhealthyAfter: config.gateway.unhealthyAfter)
        keys = KeyStore(database: database)
        ledger = Ledger(database: database)
        responses = ResponseArchive(database: database, retention: config.gateway.responseRetention)
        costs = CostMeter(window: config.gateway.costWindow)
        var clientConfig = HTTPClient.Configuration()
        clientConfig.timeout = .init(connect: .seconds(2), read: .minutes(10))
        // Every stream holds a connection to its replica: the client's default of 8 per host queued the
        // rest inside the pool, unseen by routing and the drain. A dead replica fails fast (no reconnect
        // loop): the gateway retries the request on another.
        clientConfig.connectionPool = .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 4096)
        clientConfig.connectionPool.retryConnectionEstablishment = false
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfig)
        supervisor = Supervisor(
            registry: registry, executable: Supervisor.currentExecutable, clusterToken: clusterToken,
            stopGrace: config.gateway.workerStopGrace, startTimeout: max(60, config.gateway.coldStartTimeout * 2),
            modelsDir: modelsDir, logger: logger)
        autoscaler = Autoscaler(config: config, registry: registry, supervisor: supervisor, costs: costs,
                                hardware: hardware, logger: logger)
        let registry = registry
        feed = MetricsFeed(live: metrics.live) { Self.gauges(registry, deployments: config.deployments.map(\.name)) }
    }

    /// Requests waiting (for a replica, or in replicas' engines), sequences running and KV use, over
    /// every deployment's live replicas as their heartbeats last reported.
    static func gauges(_ registry: ReplicaRegistry, deployments: [String]) -> FeedGauges {
        var queue = 0, running = 0, used = 0, total = 0
        for d in deployments {
            queue += registry.waitingForReplica(d)
            for r in registry.replicas(of: d) where r.state == .ready || r.state == .draining {
                queue += r.load.waiting
                running += r.load.running
                used += r.load.kvBlocksUsed
                total += r.load.kvBlocksTotal
            }
        }
        return FeedGauges(queueDepth: queue, running: running, kvUsage: total == 0 ? nil : Double(used) / Double(total))
    }

    /// The services that run beside the HTTP server, shut down after it (the supervisor last: its
    /// workers serve the requests the server drains).
    public var services: [any Service] {
        [supervisor, autoscaler, HardwareLogWriter(gateway: self),
         HealthChecker(registry: registry, client: client, interval: config.gateway.healthCheckInterval,
                       heartbeatTimeout: config.gateway.heartbeatTimeout, logger: logger)]
    }

    public func shutdown() async {
        try? await client.shutdown()
    }

    /// Generation requests in flight (a stream until its end), and whether the gateway drains.
    struct Traffic: Sendable {
        var inFlight = 0
        var draining = false
    }

    /// One generation request in flight: counted until it is dropped, with the stream's body if it has one.
    final class InFlight: Sendable {
        let traffic: NIOLockedValueBox<Traffic>
        init(_ traffic: NIOLockedValueBox<Traffic>) { self.traffic = traffic }
        deinit { traffic.withLockedValue { $0.inFlight -= 1 } }
    }

    /// A ticket for a new generation request; nil while draining.
    func admitTraffic() -> InFlight? {
        let admitted = traffic.withLockedValue { t in
            guard !t.draining else { return false }
            t.inFlight += 1
            return true
        }
        return admitted ? InFlight(traffic) : nil
    }

    public var isDraining: Bool { traffic.withLockedValue { $0.draining } }

    /// Graceful shutdown while the listener is still open: new generation requests get 503, those in
    /// flight get up to `grace` seconds, then the workers this gateway started are stopped: they
    /// deregister through the open listener and exit at once instead of retrying a closed port.
    public func drain(grace: Double) async {
        let waiting = traffic.withLockedValue { t in
            t.draining = true
            return t.inFlight
        }
        logger.info("draining: \(waiting) requests in flight")
        let deadline = ReplicaRegistry.now() + grace
        while traffic.withLockedValue({ $0.inFlight }) > 0, ReplicaRegistry.now() < deadline, !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(20))
        }
        await supervisor.stopAll()
    }

    public func coldStartStats(_ deployment: String) -> ColdStartStats {
        coldStarts.withLockedValue { $0[deployment] ?? ColdStartStats() }
    }

    // MARK: Routes

    public func makeRouter() -> Hummingbird.Router<BasicRequestContext> {
        let router = Hummingbird.Router()
        router.add(middleware: GatewayErrorMiddleware(logger: logger, live: metrics.live))
        router.get("/health") { _, _ in Self.json(.ok, ["status": "ok"]) }
        router.get("/ready") { _, _ in
            self.isDraining ? Self.json(.serviceUnavailable, ["status": "draining"]) : Self.json(.ok, ["status": "ready"])
        }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(bytes: self.exposition())))
        }
        router.get("/v1/models") { request, _ in
            _ = try await self.authenticate(request)
            let created = Int(Date().timeIntervalSince1970)
            return Self.json(.ok, ModelList(data: self.config.deployments.map {
                ModelObject(id: $0.name, created: created, ownedBy: "swiftlet")
            }))
        }
        router.get("/v1/models/{id}") { request, context in
            _ = try await self.authenticate(request)
            let id = context.parameters.get("id") ?? ""
            guard let d = self.config.deployment(named: id) else { throw APIError.modelNotFound(id) }
            return Self.json(.ok, ModelObject(id: d.name, created: Int(Date().timeIntervalSince1970), ownedBy: "swiftlet"))
        }
        router.post("/v1/chat/completions") { request, context in
            try await self.proxy(request, context: context, path: "/v1/chat/completions")
        }
        router.post("/v1/completions") { request, context in
            try await self.proxy(request, context: context, path: "/v1/completions")
        }
        router.post("/v1/embeddings") { request, context in
            try await self.proxy(request, context: context, path: "/v1/embeddings")
        }
        router.post("/v1/responses") { request, context in
            try await self.proxy(request, context: context, path: "/v1/responses")
        }
        router.get("/v1/responses/{id}") { request, context in
            let key = try await self.authenticate(request)
            let id = context.parameters.get("id") ?? ""
            guard let object = try await self.responses.object(id: id, keyID: key.id) else {
                throw OpenAIServer.responseNotFound(id)
            }
            return Response(status: .ok, headers: [.contentType: "application/json"],
                            body: .init(byteBuffer: ByteBuffer(bytes: object)))
        }
        router.delete("/v1/responses/{id}") { request, context in
            let key = try await self.authenticate(request)
            let id = context.parameters.get("id") ?? ""
            guard try await self.responses.delete(id: id, keyID: key.id) else { throw OpenAIServer.responseNotFound(id) }
            return Self.json(.ok, ResponseDeleted(id: id))
        }
        router.get("/v1/deployments") { request, _ in
            _ = try await self.authenticateAdmin(request)
            return Self.json(.ok, DeploymentList(data: self.config.deployments.map(self.status)))
        }
        router.patch("/v1/deployments/{name}") { request, context in
            _ = try await self.authenticateAdmin(request)
            let name = context.parameters.get("name") ?? ""
            guard let d = self.config.deployment(named: name) else { throw Self.deploymentNotFound(name) }
            let body = try await self.decode(ScaleRequest.self, request)
            let (min, max) = try body.bounds(current: self.autoscaler.effective(d))
            self.autoscaler.setBounds(d.name, min: min, max: max)
            self.logger.info("\(d.name): replicas set to \(min)...\(max) from the console")
            return Self.json(.ok, self.status(d))
        }
        router.get("/v1/usage") { request, _ in
            let key = try await self.authenticate(request)
            let since = try Self.parseSince(request.uri.queryParameters.get("since"))
            let rows = try await self.ledger.summary(since: since, keyID: key.id)
            return Self.json(.ok, UsageReport(keyID: key.id, since: since, data: rows))
        }
        addConsoleRoutes(to: router)
        router.post("/internal/replicas") { request, _ in try await self.registerReplica(request) }
        router.post("/internal/replicas/{id}/heartbeat") { request, context in
            try self.checkClusterToken(request)
            let body = try await self.decode(HeartbeatBody.self, request)
            let load = try Self.checkLoad(body.load)
            let id = context.parameters.get("id") ?? ""
            guard self.registry.heartbeat(id: id, state: body.state ?? .ready, load: load) else {
                throw APIError(status: .notFound, message: "Unknown replica '\(id)': register again.",
                               type: "invalid_request_error", code: "unknown_replica")
            }
            return Self.json(.ok, ["status": "ok"])
        }
        router.delete("/internal/replicas/{id}") { request, context in
            try self.checkClusterToken(request)
            let id = context.parameters.get("id") ?? ""
            self.registry.setState(id, .draining)
            self.logger.info("replica \(id) is draining")
            return Self.json(.ok, ["status": "draining"])
        }
        return router
    }

    /// The gateway as a Hummingbird application on host:port, with its services beside it.
    public func makeApplication(host: String, port: Int, onListening: @escaping @Sendable (String, Int) async -> Void)
        -> some ApplicationProtocol
    {
        let g = config.gateway
        return Application(
            router: makeRouter(),
            server: .http1(configuration: .init(idleTimeout: .nanoseconds(Int64(g.idleTimeout * 1e9)))),
            configuration: ApplicationConfiguration(
                address: .hostname(host, port: port), serverName: "swiftlet-gateway",
                availableConnectionsDelegate: MaximumAvailableConnections(g.maxConnections, logger: logger)),
            services: services,
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? port
                self.supervisor.setGatewayURL("http://\(host == "0.0.0.0" ? "127.0.0.1" : host):\(port)")
                await onListening(host, port)
            },
            logger: logger)
    }

    // MARK: Auth

    func authenticate(_ request: Request) async throws -> APIKey {
        guard let header = request.headers[.authorization] else {
            if !config.gateway.requireAPIKey { return .anonymous }
            throw APIError.missingAPIKey
        }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { throw APIError.invalidAPIKey }
        let secret = String(parts[1]).trimmingCharacters(in: .whitespaces)
        if let key = try await keys.authenticate(secret: secret) { return key }
        if !config.gateway.requireAPIKey { return .anonymous }
        throw APIError.invalidAPIKey
    }

    /// A live admin key (403 for other keys, 401 without a valid one); anyone on an open gateway.
    func authenticateAdmin(_ request: Request) async throws -> APIKey {
        let key = try await authenticate(request)
        guard key.admin else { throw APIError.adminKeyRequired }
        return key
    }

    func checkClusterToken(_ request: Request) throws {
        let expected = "Bearer " + clusterToken
        guard let header = request.headers[.authorization],
              Array(header.utf8).count == Array(expected.utf8).count,
              zip(header.utf8, expected.utf8).reduce(UInt8(0), { $0 | ($1.0 ^ $1.1) }) == 0
        else {
            throw APIError(status: .unauthorized, message: "A valid cluster token is required to register replicas.",
                           type: "invalid_request_error", code: "invalid_cluster_token")
        }
    }

    // MARK: Replica registration

    struct RegistrationBody: Codable {
        var id: String
        var deployment: String
        var cluster: String
        var url: String
        var pid: Int32?
        var state: ReplicaState?
        var load: EngineLoad?
        var modelFacts: ModelFacts?
        enum CodingKeys: String, CodingKey {
            case id, deployment, cluster, url, pid, state, load, modelFacts = "model_facts"
        }
    }

    struct HeartbeatBody: Codable {
        var state: ReplicaState?
        var load: EngineLoad?
    }

    /// A replica's reported load, range-checked: its counts are summed and compared (no overflow).
    static func checkLoad(_ load: EngineLoad?) throws -> EngineLoad {
        guard let load else { return EngineLoad() }
        let fields = [("running", load.running), ("waiting", load.waiting), ("kv_blocks_total", load.kvBlocksTotal),
                      ("kv_blocks_used", load.kvBlocksUsed), ("kv_blocks_cached", load.kvBlocksCached),
                      ("prefix_lookups", load.prefixLookups), ("prefix_hits", load.prefixHits)]
        for (name, value) in fields where !(0...maxLoadCount).contains(value) {
            throw APIError.invalidValue("load.\(name)", "must be between 0 and \(maxLoadCount).")
        }
        return load
    }

    static let maxLoadCount = 1 << 40

    /// A replica's model facts, range-checked before the console shows them.
    static func checkFacts(_ f: ModelFacts?) throws -> ModelFacts? {
        guard let f else { return nil }
        let limit = 1 << 50
        guard (0...limit).contains(f.parameters) else { throw APIError.invalidValue("model_facts.parameters", "must be between 0 and \(limit).") }
        guard (0...f.parameters).contains(f.activeParameters) else {
            throw APIError.invalidValue("model_facts.active_parameters", "must be between 0 and parameters.")
        }
        guard (0...4096).contains(f.experts), (0...max(f.experts, 0)).contains(f.expertsUsed) else {
            throw APIError.invalidValue("model_facts.experts", "experts must be 0 to 4096 and experts_used at most experts.")
        }
        guard (0...limit).contains(f.fileBytes) else { throw APIError.invalidValue("model_facts.file_bytes", "must be between 0 and \(limit).") }
        for (name, text) in [("architecture", f.architecture), ("weight_type", f.weightType)] where text.utf8.count > 64 {
            throw APIError.invalidValue("model_facts.\(name)", "must be at most 64 bytes.")
        }
        return f
    }

    func registerReplica(_ request: Request) async throws -> Response {
        try checkClusterToken(request)
        let body = try await decode(RegistrationBody.self, request)
        guard let d = config.deployment(named: body.deployment) else {
            throw APIError.invalidValue("deployment", "no deployment named '\(body.deployment)' in the gateway's config.")
        }
        guard d.placement.contains(body.cluster) else {
            throw APIError.invalidValue(
                "cluster", "deployment '\(d.name)' may run in \(d.placement.joined(separator: ", ")), not in '\(body.cluster)'.")
        }
        guard let url = URL(string: body.url), url.scheme == "http", url.host != nil else {
            throw APIError.invalidValue("url", "expected http://HOST:PORT, got '\(body.url)'.")
        }
        guard !body.id.isEmpty, body.id.count <= 128 else { throw APIError.invalidValue("id", "must be 1 to 128 characters.") }
        let load = try Self.checkLoad(body.load)
        let facts = try Self.checkFacts(body.modelFacts)
        if let pid = body.pid, pid < 1 { throw APIError.invalidValue("pid", "must be a process id (>= 1).") }
        let before = registry.replica(body.id)
        let r = registry.register(
            id: body.id, deployment: d.name, cluster: body.cluster, url: body.url.hasSuffix("/") ? String(body.url.dropLast()) : body.url,
            pid: body.pid, state: body.state ?? .ready, load: load, facts: facts)
        if before?.url == nil || before?.state != r.state {
            logger.info("replica \(r.id) of \(d.name) registered in cluster \(r.cluster) at \(r.url ?? "")")
        }
        return Self.json(.ok, ["id": r.id, "status": r.state.rawValue])
    }

    // MARK: Proxy

    func decode<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        let buffer = try await readBody(request)
        return try OpenAIServer.decodeJSON(type, from: Data(buffer.readableBytesView))
    }

    func readBody(_ request: Request) async throws -> ByteBuffer {
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > maxBodyBytes {
            throw APIError.bodyTooLarge(limit: maxBodyBytes)
        }
        do {
            return try await OpenAIServer.collectBody(request, upTo: maxBodyBytes, within: config.gateway.bodyTimeout)
        } catch is NIOTooManyBytesError {
            throw APIError.bodyTooLarge(limit: maxBodyBytes)
        }
    }

    /// What one request carries through its attempts.
    struct ProxyRequest: Sendable {
        var id: String
        var key: APIKey
        var deployment: Deployment
        var path: String
        var body: ByteBuffer
        var stream: Bool
        var clientWantsUsage: Bool
        var affinityKey: String?
        var arrival: Double
        var date: Date
        /// A Responses API request: the gateway keeps its conversation.
        var turn: ResponsesTurn?
    }

    /// What a Responses request needs for its storing: whether to store it, and the conversation before
    /// its output (stored history, then its own input), as a JSON array of input items.
    struct ResponsesTurn: Sendable {
        var store: Bool
        var conversation: Data
    }

    /// A Responses request as the replica gets it: the conversation that `previous_response_id` names
    /// (this key's) before its input, which the replica then neither looks up nor stores.
    func expandResponses(_ json: inout [String: Any], key: APIKey) async throws -> ResponsesTurn {
        var history: [Any] = []
        if let previous = json["previous_response_id"], !(previous is NSNull) {
            guard let id = previous as? String else {
                throw APIError.invalidRequest("Invalid type for 'previous_response_id': expected a string.",
                                              param: "previous_response_id", code: "invalid_type")
            }
            guard let stored = try await responses.conversation(id: id, keyID: key.id),
                  let items = (try? JSONSerialization.jsonObject(with: stored.items)) as? [Any] else {
                throw OpenAIServer.responseNotFound(id)
            }
            history = items
        }
        var new: [Any]
        switch json["input"] {
        case let text as String: new = [["role": "user", "content": text]]
        case let items as [Any]: new = items
        case nil, is NSNull: new = []
        default:
            throw APIError.invalidRequest("Invalid type for 'input': expected a string or an array of input items.",
                                          param: "input", code: "invalid_type")
        }
        if !history.isEmpty { json["input"] = history + new }
        let store = json["store"] as? Bool ?? true
        let conversation = (try? JSONSerialization.data(withJSONObject: history + new)) ?? Data("[]".utf8)
        return ResponsesTurn(store: store, conversation: conversation)
    }

    /// Stores a finished response (its object as the client gets it) with the conversation it ends.
    func store(_ object: Data, of p: ProxyRequest) async {
        guard let turn = p.turn, turn.store,
              let response = (try? JSONSerialization.jsonObject(with: object)) as? [String: Any],
              let id = response["id"] as? String, !id.isEmpty, id.utf8.count <= 128,
              let before = (try? JSONSerialization.jsonObject(with: turn.conversation)) as? [Any] else { return }
        let output = response["output"] as? [Any] ?? []
        do {
            let conversation = try JSONSerialization.data(withJSONObject: before + output)
            try await responses.save(id: id, keyID: p.key.id, deployment: p.deployment.name, object: object,
                                     conversation: conversation, at: p.date)
            let now = ReplicaRegistry.now()
            let due = lastPrune.withLockedValue { last -> Bool in
                guard now - last >= 3600 else { return false }
                last = now
                return true
            }
            if due { try await responses.prune() }
        } catch {
            logger.error("request \(p.id): storing response \(id) failed: \(error)")
        }
    }

    enum Attempt {
        case done(Response)
        /// Failed before any output reached the client: try another replica.
        case retry(APIError)
    }

    func proxy(_ request: Request, context: BasicRequestContext, path: String) async throws -> Response {
        let arrival = ReplicaRegistry.now()
        let date = Date()
        guard let ticket = admitTraffic() else {
            var e = APIError(status: .serviceUnavailable, message: "The gateway is shutting down; retry on another.",
                             type: "server_error", code: "shutting_down")
            e.headers[.retryAfter] = "1"
            throw e
        }
        defer { withExtendedLifetime(ticket) {} }
        let key = try await authenticate(request)
        let raw = try await readBody(request)
        guard String(validating: raw.readableBytesView, as: UTF8.self) != nil else {
            throw APIError.invalidRequest("The request body is not valid UTF-8.", code: "invalid_json")
        }
        guard var json = (try? JSONSerialization.jsonObject(with: Data(raw.readableBytesView))) as? [String: Any] else {
            throw APIError.invalidJSON
        }
        guard let modelValue = json["model"] else {
            throw APIError.invalidRequest("Missing required parameter: 'model'.", param: "model", code: "missing_required_parameter")
        }
        guard let model = modelValue as? String else {
            throw APIError.invalidRequest("Invalid type for 'model': expected a string.", param: "model", code: "invalid_type")
        }
        guard let deployment = config.deployment(named: model) else { throw APIError.modelNotFound(model) }

        let monthUsed = limiter.needsMonthUsage(key, date: date)
            ? try await ledger.tokensUsed(keyID: key.id, since: date.startOfMonthUTC) : nil
        do {
            try limiter.admit(key, now: arrival, date: date, monthUsed: monthUsed)
        } catch {
            metrics.limited(error.kind.rawValue)
            var e = APIError(status: .tooManyRequests, message: error.message,
                             type: error.kind == .quota ? "insufficient_quota" : "rate_limit_error",
                             code: error.kind == .quota ? "insufficient_quota" : "rate_limit_exceeded")
            e.headers[.retryAfter] = String(error.retryAfterSeconds)
            throw e
        }

        // Streams always ask the replica for usage (for the ledger); the client gets it only if it asked.
        // (A Responses stream ends with its usage anyway.)
        let stream = json["stream"] as? Bool ?? false
        var clientWantsUsage = false
        var body = raw
        var turn: ResponsesTurn?
        if path == "/v1/responses" {
            let history = json["previous_response_id"] != nil
            turn = try await expandResponses(&json, key: key)
            if history, let data = try? JSONSerialization.data(withJSONObject: json) { body = ByteBuffer(bytes: data) }
        } else if stream, json["stream_options"] == nil || json["stream_options"] is [String: Any] {
            var options = json["stream_options"] as? [String: Any] ?? [:]
            clientWantsUsage = options["include_usage"] as? Bool ?? false
            options["include_usage"] = true
            json["stream_options"] = options
            if let data = try? JSONSerialization.data(withJSONObject: json) { body = ByteBuffer(bytes: data) }
        }
        let proxied = ProxyRequest(
            id: "req_" + KeyStore.randomHex(12), key: key, deployment: deployment, path: path, body: body, stream: stream,
            clientWantsUsage: clientWantsUsage, affinityKey: RoutingPolicy.affinityKey(model: model, body: json),
            arrival: arrival, date: date, turn: turn)

        var tried = Set<String>()
        var coldStart = false
        var lastError = APIError(status: .badGateway, message: "No replica could serve the request.", type: "server_error",
                                 code: "replica_failed")
        for attempt in 0...config.gateway.retries {
            let replica: Replica
            do {
                let (r, waited) = try await acquire(deployment, affinityKey: proxied.affinityKey, excluding: tried,
                                                    arrival: arrival)
                replica = r
                coldStart = coldStart || (waited && attempt == 0)
            } catch let e as APIError {
                lastError = e
                break
            }
            if attempt > 0 { metrics.retry(deployment: deployment.name) }
            let isLast = attempt == config.gateway.retries
            switch try await forward(proxied, to: replica, coldStart: coldStart, isLastAttempt: isLast, ticket: ticket) {
            case .done(let response):
                return response
            case .retry(let error):
                tried.insert(replica.id)
                lastError = error
                logger.warning("request \(proxied.id) failed on replica \(replica.id) before its first token: \(error.message)")
            }
        }
        try await recordFailure(proxied, status: Int(lastError.status.code), coldStart: coldStart)
        metrics.request(deployment: deployment.name, status: Int(lastError.status.code))
        // The id of the ledger row, as on every answer that has one.
        lastError.headers[HTTPField.Name("X-Request-Id")!] = proxied.id
        throw lastError
    }

    /// A routable replica, waiting for one to start if the deployment has none (cold start). The flag
    /// says whether it had to wait.
    func acquire(_ d: Deployment, affinityKey: String?, excluding: Set<String>, arrival: Double) async throws -> (Replica, Bool) {
        if let r = registry.acquire(deployment: d, affinityKey: affinityKey, excluding: excluding) { return (r, false) }
        registry.waitingForReplica(d.name, 1)
        defer { registry.waitingForReplica(d.name, -1) }
        let deadline = arrival + config.gateway.coldStartTimeout
        var lastNudge = 0.0
        while true {
            let now = ReplicaRegistry.now()
            if now - lastNudge >= 1 {
                lastNudge = now
                let coming = autoscaler.coldStart(d)
                let recovering = registry.replicas(of: d.name).contains {
                    !excluding.contains($0.id) && ($0.state == .starting || $0.state == .ready || $0.state == .failed)
                }
                if !coming && !recovering {
                    throw APIError(
                        status: .serviceUnavailable,
                        message: "Deployment '\(d.name)' has no replica available and none can be started here (clusters: \(d.placement.joined(separator: ", "))).",
                        type: "server_error", code: "no_replica")
                }
            }
            guard now < deadline else {
                throw APIError(
                    status: .serviceUnavailable,
                    message: "Timed out after \(Int(config.gateway.coldStartTimeout)) s waiting for a replica of deployment '\(d.name)' to start"
                        + (supervisor.startFailure(d.name).map { " (\($0))." } ?? "."),
                    type: "server_error", code: "cold_start_timeout")
            }
            try await Task.sleep(for: .milliseconds(10))
            if let r = registry.acquire(deployment: d, affinityKey: affinityKey, excluding: excluding) { return (r, true) }
        }
    }

    func upstreamError(_ replica: Replica, _ error: Error) -> APIError {
        APIError(status: .badGateway, message: "Replica \(replica.id) failed: \(error)", type: "server_error",
                 code: "replica_failed")
    }

    func forward(_ p: ProxyRequest, to replica: Replica, coldStart: Bool, isLastAttempt: Bool,
                 ticket: InFlight) async throws -> Attempt {
        var upstream = HTTPClientRequest(url: replica.url! + p.path)
        upstream.method = .POST
        upstream.headers.add(name: "Content-Type", value: "application/json")
        upstream.headers.add(name: "Authorization", value: "Bearer \(clusterToken)")
        upstream.headers.add(name: "X-Request-Id", value: p.id)
        if p.turn != nil { upstream.headers.add(name: OpenAIServer.callerStoresHeader, value: "caller") }
        upstream.body = .bytes(p.body)
        let response: HTTPClientResponse
        do {
            response = try await client.execute(upstream, timeout: upstreamTimeout)
        } catch {
            registry.release(replica.id, connectionFailed: true)
            return .retry(upstreamError(replica, error))
        }
        let status = Int(response.status.code)
        // A replica that is busy, loading or shutting down: another may take it.
        if !isLastAttempt, status == 429 || status == 502 || status == 503 {
            let body = try? await response.body.collect(upTo: 1 << 20)
            registry.release(replica.id)
            if status == 503 { registry.probed(replica.id, ok: false) }
            let message = body.flatMap { try? JSONDecoder().decode(ErrorResponse.self, from: Data($0.readableBytesView)) }?.error.message
            return .retry(APIError(status: .badGateway, message: "Replica \(replica.id) answered \(status): \(message ?? "")",
                                   type: "server_error", code: "replica_failed"))
        }
        var headers: HTTPFields = [
            HTTPField.Name("X-Request-Id")!: p.id,
            HTTPField.Name("X-Swiftlet-Replica")!: replica.id,
            HTTPField.Name("X-Swiftlet-Cluster")!: replica.cluster,
        ]
        if let retryAfter = response.headers.first(name: "Retry-After") { headers[.retryAfter] = retryAfter }

        guard p.stream && status == 200 else {
            let body: ByteBuffer
            do {
                body = try await response.body.collect(upTo: 256 << 20)
            } catch {
                registry.release(replica.id, connectionFailed: true)
                return .retry(upstreamError(replica, error))
            }
            registry.release(replica.id)
            let end = ReplicaRegistry.now()
            var usage: (Int, Int) = (0, 0)
            if status == 200,
               let object = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any],
               let u = object["usage"] as? [String: Any] {
                // Chat and completions say prompt/completion tokens, the Responses API input/output tokens.
                usage = (SSEEvent.count(u["prompt_tokens"] ?? u["input_tokens"]) ?? 0,
                         SSEEvent.count(u["completion_tokens"] ?? u["output_tokens"]) ?? 0)
            }
            if status == 200, p.turn != nil { await store(Data(body.readableBytesView), of: p) }
            try await finish(p, replica: replica, status: status == 200 ? .completed : .failed, httpStatus: status,
                             usage: usage, firstToken: status == 200 ? end : nil, end: end, coldStart: coldStart)
            headers[.contentType] = response.headers.first(name: "Content-Type") ?? "application/json"
            return .done(Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: body)))
        }
        // The replica says how many prompt tokens it took before it streams any: a stream that breaks
        // later is billed for them (its usage chunk, which comes last, never arrives).
        let promptTokens = response.headers.first(name: OpenAIServer.promptTokensHeader).flatMap { SSEEvent.count(Int($0)) }
        return try await relayStream(p, response: response, replica: replica, headers: headers, promptTokens: promptTokens,
                                     coldStart: coldStart, ticket: ticket)
    }

    enum StreamStart: Sendable {
        case committed([SSEEvent], at: Double)
        /// No output yet; `replicaAlive` when the replica itself reported the failure.
        case failed(String, replicaAlive: Bool)
    }

    /// Reads the replica's events until output starts (a token, a finish or the end); a failure before
    /// that (the replica's own error event included) is retried elsewhere. Then the response relays
    /// the rest as it comes.
    func relayStream(_ p: ProxyRequest, response: HTTPClientResponse, replica: Replica, headers: HTTPFields,
                     promptTokens: Int?, coldStart: Bool, ticket: InFlight) async throws -> Attempt {
        let (events, continuation) = AsyncThrowingStream.makeStream(of: SSEEvent.self)
        let body = response.body
        let start: StreamStart = await withCheckedContinuation { started in
            let pump = Task {
                var parser = SSEParser()
                var held: [SSEEvent] = []
                var committed = false
                do {
                    for try await chunk in body {
                        for event in parser.feed(chunk) {
                            if committed {
                                continuation.yield(event)
                            } else if event.isError {
                                started.resume(returning: .failed(
                                    "its error event before any token: \(event.errorMessage ?? "no message")", replicaAlive: true))
                                continuation.finish()
                                return
                            } else {
                                held.append(event)
                                if event.commits {
                                    committed = true
                                    started.resume(returning: .committed(held, at: ReplicaRegistry.now()))
                                }
                            }
                        }
                    }
                    if committed {
                        continuation.finish()
                    } else {
                        started.resume(returning: .failed("the stream ended before its first token", replicaAlive: false))
                    }
                } catch {
                    if committed {
                        continuation.finish(throwing: error)
                    } else {
                        started.resume(returning: .failed("\(error)", replicaAlive: false))
                    }
                }
            }
            continuation.onTermination = { _ in pump.cancel() }
        }
        let held: [SSEEvent], firstAt: Double
        switch start {
        case .committed(let events, let at):
            (held, firstAt) = (events, at)
        case .failed(let why, let alive):
            registry.release(replica.id, connectionFailed: !alive)
            return .retry(APIError(status: .badGateway, message: "Replica \(replica.id) failed: \(why)",
                                   type: "server_error", code: "replica_failed"))
        }
        var headers = headers
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        let firstToken = held.contains { $0.tokenChunks > 0 || $0.finished } ? firstAt : nil
        return .done(Response(status: .ok, headers: headers, body: ResponseBody { writer in
            // The request is in flight (for the drain) until its stream ends.
            defer { withExtendedLifetime(ticket) {} }
            var usage: (prompt: Int, completion: Int)?
            var delivered = 0
            var sawDone = false
            var sawError = false
            var upstreamFailure: String?
            var clientGone = false
            var firstToken = firstToken
            func relay(_ event: SSEEvent) async throws {
                if let u = event.usage { usage = u }
                if event.tokenChunks > 0, firstToken == nil { firstToken = ReplicaRegistry.now() }
                delivered += event.tokenChunks
                if event.isError { sawError = true }
                if event.isDone {
                    sawDone = true
                    return
                }
                if event.isTerminal {
                    // Stored before the client sees the end, so that its next turn finds it.
                    if let response = event.response { await self.store(response, of: p) }
                    sawDone = true
                }
                if event.usageOnly && !p.clientWantsUsage { return }
                do {
                    try await writer.write(event.raw)
                } catch {
                    clientGone = true
                    throw CancellationError()
                }
            }
            do {
                for event in held { try await relay(event) }
                if !sawDone {
                    for try await event in events {
                        try await relay(event)
                        if sawDone { break }
                    }
                }
                if !sawDone {
                    upstreamFailure = p.turn == nil ? "the replica's stream ended without [DONE]"
                        : "the replica's stream ended before response.completed"
                }
            } catch {
                if !clientGone { upstreamFailure = "\(error)" }
            }
            continuation.finish()
            self.registry.release(replica.id, connectionFailed: upstreamFailure != nil)
            let end = ReplicaRegistry.now()
            // Without the usage chunk (a broken stream): the prompt the replica took and the tokens delivered.
            let counted = usage ?? (promptTokens ?? 0, delivered)
            // The replica's own error event after output began: the response is incomplete, never completed.
            let status: UsageRecord.Status = sawDone && !sawError ? .completed : .interrupted
            if sawError && upstreamFailure == nil && !clientGone {
                self.metrics.streamBroken(deployment: p.deployment.name)
                self.metrics.live.error()
                self.logger.warning("request \(p.id): replica \(replica.id) reported an error after output had started")
            }
            // The ledger row is written before the client sees the end of the stream.
            try? await self.finish(p, replica: replica, status: status, httpStatus: 200, usage: counted,
                                   firstToken: firstToken, end: end, coldStart: coldStart)
            if clientGone {
                self.logger.info("request \(p.id): client disconnected")
                throw CancellationError()
            }
            if let upstreamFailure {
                self.metrics.streamBroken(deployment: p.deployment.name)
                self.metrics.live.error()
                self.logger.warning("request \(p.id): stream from replica \(replica.id) broke: \(upstreamFailure)")
                let error = ErrorResponse(error: .init(
                    message: "The replica serving this request failed after output had started (replica \(replica.id)); the response is incomplete.",
                    type: "server_error", param: nil, code: "replica_failed"))
                if p.turn != nil {
                    // The Responses API's error event, as a replica sends it; no [DONE] in that API.
                    var event = ByteBuffer(string: "event: error\n")
                    event.writeImmutableBuffer(Self.sseEvent(error))
                    try? await writer.write(event)
                } else {
                    try? await writer.write(Self.sseEvent(error))
                }
            }
            if p.turn == nil { try await writer.write(ByteBuffer(string: "data: [DONE]\n\n")) }
            try await writer.finish(nil)
        }))
    }

    /// Bills a request that reached a replica: ledger row (durable before the client sees the end),
    /// limits, costs, metrics.
    func finish(_ p: ProxyRequest, replica: Replica, status: UsageRecord.Status, httpStatus: Int,
                usage: (prompt: Int, completion: Int), firstToken: Double?, end: Double, coldStart: Bool) async throws {
        let d = p.deployment
        let ttft = firstToken.map { $0 - p.arrival }
        let record = UsageRecord(
            requestID: p.id, keyID: p.key.id, deployment: d.name, replica: replica.id, cluster: replica.cluster,
            promptTokens: usage.prompt, completionTokens: usage.completion, timeToFirstToken: ttft,
            duration: end - p.arrival, status: status, httpStatus: httpStatus,
            cost: d.cost(promptTokens: usage.prompt, completionTokens: usage.completion), coldStart: coldStart,
            createdAt: p.date)
        do {
            try await ledger.record(record)
        } catch {
            logger.error("request \(p.id): usage ledger write failed: \(error)")
            throw APIError.internalError
        }
        let tokens = usage.prompt + usage.completion
        limiter.charge(p.key, tokens: tokens, now: end, date: p.date)
        costs.served(d.name, tokens: tokens, now: end)
        metrics.tokens(deployment: d.name, prompt: usage.prompt, completion: usage.completion)
        metrics.request(deployment: d.name, status: httpStatus)
        metrics.duration(deployment: d.name, seconds: end - p.arrival)
        metrics.live.tokens(prompt: usage.prompt, completion: usage.completion)
        if p.stream, let firstToken, usage.completion > 1 {
            metrics.live.timePerOutputToken((end - firstToken) / Double(usage.completion - 1))
        }
        if let ttft {
            metrics.live.timeToFirstToken(ttft)
            metrics.timeToFirstToken(deployment: d.name, seconds: ttft)
            if coldStart {
                metrics.coldStart(deployment: d.name, seconds: ttft)
                coldStarts.withLockedValue { $0[d.name, default: ColdStartStats()].add(ttft) }
                logger.info("\(d.name): cold start, \(String(format: "%.3f", ttft)) s from request to first token")
            }
        }
    }

    /// A request that no replica served: a ledger row with its status, no tokens.
    func recordFailure(_ p: ProxyRequest, status: Int, coldStart: Bool) async throws {
        let record = UsageRecord(
            requestID: p.id, keyID: p.key.id, deployment: p.deployment.name, replica: nil, cluster: nil, promptTokens: 0,
            completionTokens: 0, timeToFirstToken: nil, duration: ReplicaRegistry.now() - p.arrival, status: .failed,
            httpStatus: status, cost: 0, coldStart: coldStart, createdAt: p.date)
        do {
            try await ledger.record(record)
        } catch {
            logger.error("request \(p.id): usage ledger write failed: \(error)")
        }
    }

    // MARK: Deployments and usage

    func status(_ configured: Deployment) -> DeploymentStatus {
        let d = autoscaler.effective(configured)
        let replicas = registry.replicas(of: d.name)
        let clusters = d.placement.map { name in
            ClusterStatus(
                name: name, supervised: config.cluster(named: name)?.supervised ?? false,
                hardwarePricePerHour: autoscaler.hardwarePrice(d, name),
                replicas: replicas.filter { $0.cluster == name }.map(ReplicaStatus.init))
        }
        let decision = autoscaler.decision(d.name)
        let live = Autoscaler.live(replicas)
        return DeploymentStatus(
            name: d.name, model: Self.describe(d.model),
            replicas: .init(min: d.minReplicas, max: d.maxReplicas, configMin: configured.minReplicas,
                            configMax: configured.maxReplicas, desired: decision?.desired ?? live.count,
                            ready: replicas.filter(\.routable).count,
                            starting: replicas.filter { $0.state == .starting }.count),
            targetConcurrency: d.targetConcurrency, scaleToZeroAfter: d.scaleToZeroAfter,
            outstanding: registry.demand(d.name),
            price: .init(inputPerMillion: d.inputPricePerMillion, outputPerMillion: d.outputPricePerMillion),
            cost: costs.report(d.name), coldStarts: coldStartStats(d.name), modelFacts: registry.facts(d.name),
            clusters: clusters)
    }

    static func describe(_ source: ModelSourceConfig) -> String {
        switch source {
        case .name(let n): n
        case .package(let r, let f, _): "\(r):\(f)"
        }
    }

    static func parseSince(_ text: String?) throws -> Date {
        guard let text, !text.isEmpty else { return Date().startOfMonthUTC }
        if let d = parseDate(text) { return d }
        throw APIError.invalidValue("since", "expected a date (2026-11-01), a time (2026-11-01T12:00:00Z) or a Unix timestamp, from 1970 to 9999.")
    }

    /// Dates a period may name: 1970-01-01 to the end of 9999 (beyond, minute numbers and calendar
    /// arithmetic overflow).
    public static let dateRange = Date(timeIntervalSince1970: 0)...Date(timeIntervalSince1970: 253_402_300_799)

    public static func parseDate(_ text: String) -> Date? {
        guard text.utf8.count <= 64, let d = parseAnyDate(text), dateRange.contains(d) else { return nil }
        return d
    }

    static func parseAnyDate(_ text: String) -> Date? {
        if let t = Double(text), t.isFinite { return Date(timeIntervalSince1970: t) }
        let full = ISO8601DateFormatter()
        if let d = full.date(from: text) { return d }
        // JavaScript's toISOString() has milliseconds; the day form would take only its date.
        full.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = full.date(from: text) { return d }
        guard text.count == 10 else { return nil }
        let day = ISO8601DateFormatter()
        day.formatOptions = [.withFullDate]
        return day.date(from: text)
    }

    // MARK: Metrics

    func exposition() -> [UInt8] {
        for d in config.deployments {
            let replicas = registry.replicas(of: d.name)
            for cluster in d.placement {
                for state in [ReplicaState.starting, .ready, .draining, .failed] {
                    metrics.gauge("swiftlet_gateway_replicas", [("deployment", d.name), ("cluster", cluster), ("state", state.rawValue)])
                        .record(replicas.filter { $0.cluster == cluster && $0.state == state }.count)
                }
                metrics.gauge("swiftlet_gateway_ejected_replicas", [("deployment", d.name), ("cluster", cluster)])
                    .record(replicas.filter { $0.cluster == cluster && $0.ejected }.count)
            }
            metrics.gauge("swiftlet_gateway_outstanding_requests", [("deployment", d.name)]).record(registry.demand(d.name))
            metrics.gauge("swiftlet_gateway_desired_replicas", [("deployment", d.name)])
                .record(autoscaler.decision(d.name)?.desired ?? 0)
            metrics.gauge("swiftlet_gateway_configured_price_per_million_tokens", [("deployment", d.name), ("kind", "input")])
                .record(d.inputPricePerMillion)
            metrics.gauge("swiftlet_gateway_configured_price_per_million_tokens", [("deployment", d.name), ("kind", "output")])
                .record(d.outputPricePerMillion)
            let report = costs.report(d.name)
            metrics.gauge("swiftlet_gateway_measured_cost_per_million_tokens", [("deployment", d.name)])
                .record(report.measuredPerMillion ?? 0)
            metrics.gauge("swiftlet_gateway_tokens_per_hour", [("deployment", d.name)]).record(report.tokensPerHour)
            if let last = coldStartStats(d.name).lastSeconds {
                metrics.gauge("swiftlet_gateway_last_cold_start_seconds", [("deployment", d.name)]).record(last)
            }
        }
        metrics.gauge("swiftlet_gateway_ejections").record(registry.ejections)
        return metrics.registry.emitToBuffer()
    }

    // MARK: JSON

    static func encode(_ value: some Encodable) -> ByteBuffer {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let data = (try? encoder.encode(value))
            ?? Data(#"{"error":{"message":"encoding failed","type":"server_error","param":null,"code":null}}"#.utf8)
        return ByteBuffer(bytes: data)
    }

    static func json(_ status: HTTPResponse.Status, _ value: some Encodable, headers: HTTPFields = [:]) -> Response {
        var headers = headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: encode(value)))
    }

    static func sseEvent(_ value: some Encodable) -> ByteBuffer {
        var buffer = ByteBuffer(string: "data: ")
        var json = encode(value)
        buffer.writeBuffer(&json)
        buffer.writeString("\n\n")
        return buffer
    }
}

/// Runs first in the gateway's graceful shutdown (list it after the application): `Gateway.drain`.
public struct GatewayDrain: Service {
    let gateway: Gateway
    let grace: Double

    public init(gateway: Gateway, grace: Double) {
        self.gateway = gateway
        self.grace = grace
    }

    public func run() async throws {
        try? await gracefulShutdown()
        guard !Task.isCancelled else { return }
        await gateway.drain(grace: grace)
    }
}

/// OpenAI-shaped errors for everything that goes wrong, unknown URLs included.
/// Generation requests are counted (with their status) for the console's live metrics.
struct GatewayErrorMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let logger: Logger
    let live: LiveMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let response = await respond(request, context: context, next: next)
        if request.method == .post,
           ["/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings"].contains(request.uri.path) {
            live.request(status: Int(response.status.code))
        }
        return response
    }

    func respond(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async -> Response {
        do {
            return try await next(request, context)
        } catch {
            let e: APIError
            if let a = APIError.from(error) {
                e = a
            } else if let h = error as? HTTPError, h.status == .notFound {
                e = .unknownURL(request.method, request.uri.path)
            } else if let h = error as? HTTPError, h.status.code < 500 {
                e = APIError(status: h.status, message: h.body ?? h.status.reasonPhrase, type: "invalid_request_error")
            } else {
                logger.error("request failed", metadata: ["error": "\(String(reflecting: error))"])
                e = .internalError
            }
            return Gateway.json(e.status, e.body, headers: e.headers)
        }
    }
}

// MARK: Shapes of /v1/deployments and /v1/usage

struct DeploymentList: Encodable {
    var object = "list"
    var data: [DeploymentStatus]
}

struct DeploymentStatus: Encodable {
    struct Replicas: Encodable {
        var min: Int
        var max: Int
        /// The bounds in swiftlet.yaml (min and max differ from them after a change at run time).
        var configMin: Int
        var configMax: Int
        var desired: Int
        var ready: Int
        var starting: Int
        enum CodingKeys: String, CodingKey {
            case min, max, desired, ready, starting, configMin = "config_min", configMax = "config_max"
        }
    }

    struct Price: Encodable {
        var inputPerMillion: Double
        var outputPerMillion: Double
        enum CodingKeys: String, CodingKey {
            case inputPerMillion = "input_per_million", outputPerMillion = "output_per_million"
        }
    }

    var object = "deployment"
    var name: String
    var model: String
    var replicas: Replicas
    var targetConcurrency: Int
    var scaleToZeroAfter: Double
    var outstanding: Int
    var price: Price
    var cost: CostReport
    var coldStarts: ColdStartStats
    /// What the last replica to register reported about its model (nil before any did).
    var modelFacts: ModelFacts?
    var clusters: [ClusterStatus]

    enum CodingKeys: String, CodingKey {
        case object, name, model, replicas, outstanding, price, cost, clusters, modelFacts = "model_facts"
        case targetConcurrency = "target_concurrency", scaleToZeroAfter = "scale_to_zero_after"
        case coldStarts = "cold_starts"
    }
}

struct ClusterStatus: Encodable {
    var name: String
    var supervised: Bool
    var hardwarePricePerHour: Double
    var replicas: [ReplicaStatus]
    enum CodingKeys: String, CodingKey {
        case name, supervised, replicas, hardwarePricePerHour = "hardware_price_per_hour"
    }
}

struct ReplicaStatus: Encodable {
    var id: String
    var state: ReplicaState
    var url: String?
    var pid: Int32?
    var supervised: Bool
    var ejected: Bool
    var outstanding: Int
    var requests: Int
    var failures: Int
    var load: EngineLoad
    var kvUsage: Double

    init(_ r: Replica) {
        id = r.id
        state = r.state
        url = r.url
        pid = r.pid
        supervised = r.supervised
        ejected = r.ejected
        outstanding = r.outstanding
        requests = r.requests
        failures = r.failures
        load = r.load
        kvUsage = r.load.kvUsage
    }

    enum CodingKeys: String, CodingKey {
        case id, state, url, pid, supervised, ejected, outstanding, requests, failures, load, kvUsage = "kv_usage"
    }
}

struct UsageReport: Encodable {
    var object = "usage"
    var keyID: String
    var since: Date
    var data: [UsageSummary]
    var totalTokens: Int { data.reduce(0) { $0 + $1.promptTokens + $1.completionTokens } }
    var totalCost: Double { data.reduce(0) { $0 + $1.cost } }

    enum CodingKeys: String, CodingKey {
        case object, keyID = "key_id", since, data, totalTokens = "total_tokens", totalCost = "total_cost"
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(object, forKey: .object)
        try c.encode(keyID, forKey: .keyID)
        try c.encode(since, forKey: .since)
        try c.encode(data, forKey: .data)
        try c.encode(totalTokens, forKey: .totalTokens)
        try c.encode(totalCost, forKey: .totalCost)
    }
}
