import Console
import Engine
import Foundation
import Grammar
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import ServiceLifecycle

public struct ServerConfiguration: Sendable {
    /// When set, /v1/* requests need `Authorization: Bearer <apiKey>`. /health, /ready and /metrics stay
    /// open so that probes and scrapers need no secret.
    public var apiKey: String?
    /// Larger request bodies get 413.
    public var maxBodyBytes: Int
    /// Most choices (`n`, times the number of prompts for completions) one request may ask for.
    public var maxChoices: Int
    /// The Retry-After header of a 429.
    public var retryAfterSeconds: Int
    /// Seconds a connection may stay silent while a request is read (headers or body) or between
    /// requests before it is closed. A response being written (a long generation) is not idle. Longer
    /// than the 60 s that HTTP clients' pools keep idle connections, so that they close them first.
    public var idleTimeoutSeconds: Double
    /// Connections open at once; past it the server stops accepting until one closes (they wait in the
    /// listen backlog), so file descriptors cannot run out.
    public var maxConnections: Int
    /// Largest request header block in bytes; larger ones get 431.
    public var maxHeaderBytes: Int
    /// Seconds a request body may take to arrive in full (a client trickling bytes never looks idle);
    /// past it the request gets 408 and the connection is closed.
    public var bodyTimeoutSeconds: Double

    public init(apiKey: String? = nil, maxBodyBytes: Int = 4 << 20, maxChoices: Int = 16, retryAfterSeconds: Int = 1,
                idleTimeoutSeconds: Double = 75, maxConnections: Int = 512, maxHeaderBytes: Int = 64 << 10,
                bodyTimeoutSeconds: Double = 60) {
        self.apiKey = apiKey.flatMap { $0.isEmpty ? nil : $0 }
        self.maxBodyBytes = maxBodyBytes
        self.maxChoices = maxChoices
        self.retryAfterSeconds = retryAfterSeconds
        self.idleTimeoutSeconds = idleTimeoutSeconds
        self.maxConnections = maxConnections
        self.maxHeaderBytes = maxHeaderBytes
        self.bodyTimeoutSeconds = bodyTimeoutSeconds
    }
}

/// The model the server answers for: a generative model (its engine for tokenization and templates,
/// and the service that runs generations on it) or an embedding model (the service that batches its
/// embeddings).
public struct ServedModel: Sendable {
    public enum Backend: Sendable {
        case generation(InferenceEngine, any GenerationService)
        case embedding(EmbeddingService)
    }

    /// The id of GET /v1/models; `aliases` are other names requests may use for it.
    public var id: String
    public var aliases: Set<String>
    public var backend: Backend
    public var created: Int

    public init(id: String, aliases: Set<String> = [], engine: InferenceEngine, service: any GenerationService,
                created: Int = Int(Date().timeIntervalSince1970)) {
        self.init(id: id, aliases: aliases, backend: .generation(engine, service), created: created)
    }

    public init(id: String, aliases: Set<String> = [], backend: Backend, created: Int = Int(Date().timeIntervalSince1970)) {
        self.id = id
        self.aliases = aliases
        self.backend = backend
        self.created = created
    }

    public var engine: InferenceEngine? {
        if case .generation(let e, _) = backend { e } else { nil }
    }

    public var service: (any GenerationService)? {
        if case .generation(_, let s) = backend { s } else { nil }
    }

    public var embeddings: EmbeddingService? {
        if case .embedding(let s) = backend { s } else { nil }
    }

    /// What /v1/embeddings runs on: an encoder's service, or a decoder whose file declares last-token pooling.
    public var embedder: (any Embedder)? {
        switch backend {
        case .embedding(let s): s
        case .generation(let e, let s): DecoderEmbeddings(engine: e, service: s)
        }
    }

    public var stats: ServiceStats {
        switch backend {
        case .generation(_, let s): s.stats
        case .embedding(let s): s.stats
        }
    }

    public var facts: ModelFacts {
        switch backend {
        case .generation(let e, _): e.facts
        case .embedding(let s): s.engine.facts
        }
    }

    /// Tokens (prompt + generated) a request may use: the model's context, or less if the service's
    /// KV cache is smaller. For an embedding model, the tokens of one input.
    public var contextLength: Int {
        switch backend {
        case .generation(let e, let s): min(e.contextLength, s.maxSequenceTokens)
        case .embedding(let s): s.engine.contextLength
        }
    }

    /// The engine and service of a generative model; 400 for an embedding model.
    public func generation() throws -> (engine: InferenceEngine, service: any GenerationService) {
        guard case .generation(let e, let s) = backend else {
            throw APIError.invalidRequest(
                "The model '\(id)' is an embedding model: it serves /v1/embeddings, not completions.",
                param: "model", code: "model_not_supported")
        }
        return (e, s)
    }

    public func answers(to name: String) -> Bool {
        name == id || aliases.contains(name) || name.lowercased() == id.lowercased()
            || aliases.contains { $0.lowercased() == name.lowercased() }
    }
}

/// The OpenAI-compatible HTTP API over one model. The model may arrive after the server starts
/// (GET /ready answers 503 until then).
public final class OpenAIServer: Sendable {
    public let configuration: ServerConfiguration
    public let metrics: ServerMetrics
    /// The console's static files, served at / and /console/.
    public let assets: ConsoleAssets
    /// Samples for the console's live charts; run it as a service beside the server.
    public let feed: MetricsFeed
    public let startedAt = Date()
    /// Responses stored by POST /v1/responses for GET, DELETE and `previous_response_id`.
    public let responses: ResponseStore
    /// What `makeRouter` routed, for 405s.
    let routes = RouteTable()
    private let loaded: NIOLockedValueBox<ServedModel?>

    public init(configuration: ServerConfiguration = .init(), metrics: ServerMetrics = ServerMetrics(),
                model: ServedModel? = nil, assets: ConsoleAssets = .load(), responses: ResponseStore = ResponseStore()) {
        self.configuration = configuration
        self.responses = responses
        self.metrics = metrics
        self.assets = assets
        let loaded = NIOLockedValueBox(model)
        self.loaded = loaded
        feed = MetricsFeed(live: metrics.live) { Self.gauges(loaded.withLockedValue { $0 }?.stats) }
    }

    public var model: ServedModel? { loaded.withLockedValue { $0 } }

    public func setModel(_ model: ServedModel) { loaded.withLockedValue { $0 = model } }

    /// The model a request names: 503 while loading, 404 for another name.
    func model(named name: String) throws -> ServedModel {
        guard let model else { throw APIError.modelLoading }
        guard model.answers(to: name) else { throw APIError.modelNotFound(name) }
        return model
    }

    // MARK: HTTP

    public func makeRouter() -> Router<ServerRequestContext> {
        let router = Router(context: ServerRequestContext.self)
        router.add(middleware: APIMiddleware(server: self))

        router.on(.get, "/health", in: routes) { _, _ in JSONResponse.make(status: .ok, ["status": "ok"]) }
        router.on(.get, "/ready", in: routes) { _, _ in
            if let model = self.model {
                return JSONResponse.make(status: .ok, ["status": "ready", "model": model.id])
            }
            return JSONResponse.make(status: .serviceUnavailable, ["status": "loading"])
        }
        router.on(.get, "/metrics", in: routes) { _, _ in
            let body = self.metrics.exposition(stats: self.model?.stats)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: body)))
        }
        router.on(.get, "/v1/models", in: routes) { _, _ in
            guard let model = self.model else { throw APIError.modelLoading }
            return JSONResponse.make(status: .ok, ModelList(data: [self.modelObject(model)]))
        }
        router.on(.get, "/v1/models/{id}", in: routes) { _, context in
            let id = context.parameters.get("id") ?? ""
            return JSONResponse.make(status: .ok, self.modelObject(try self.model(named: id)))
        }
        router.on(.post, "/v1/chat/completions", in: routes) { request, context in
            let body = try await self.decodeBody(ChatCompletionRequest.self, request)
            return try await self.chatCompletion(body, logger: context.logger, clientGone: context.clientGone)
        }
        router.on(.post, "/v1/completions", in: routes) { request, context in
            let body = try await self.decodeBody(CompletionRequest.self, request)
            return try await self.completion(body, logger: context.logger, clientGone: context.clientGone)
        }
        router.on(.post, "/v1/responses", in: routes) { request, context in
            let body = try await self.decodeBody(ResponsesRequest.self, request)
            let callerStores = request.headers[HTTPField.Name(Self.callerStoresHeader)!] == "caller"
            return try await self.responses(body, owner: callerStores ? nil : Self.responsesOwner, logger: context.logger,
                                            clientGone: context.clientGone)
        }
        router.on(.get, "/v1/responses/{id}", in: routes) { _, context in
            let id = context.parameters.get("id") ?? ""
            guard let entry = self.responses.get(id, owner: Self.responsesOwner) else { throw Self.responseNotFound(id) }
            return JSONResponse.make(status: .ok, entry.object)
        }
        router.on(.delete, "/v1/responses/{id}", in: routes) { _, context in
            let id = context.parameters.get("id") ?? ""
            guard self.responses.delete(id, owner: Self.responsesOwner) else { throw Self.responseNotFound(id) }
            return JSONResponse.make(status: .ok, ResponseDeleted(id: id))
        }
        router.on(.post, "/v1/embeddings", in: routes) { request, context in
            let body = try await self.decodeBody(EmbeddingRequest.self, request)
            return try await self.embeddings(body, logger: context.logger)
        }
        addConsoleRoutes(to: router)
        return router
    }

    /// A Hummingbird application serving this API on `host:port` (port 0 picks a free one). `onListening`
    /// gets the bound host and port. `services` run beside the server and shut down after it, once the
    /// requests in flight are done.
    public func makeApplication(
        host: String, port: Int, logger: Logger, services: [any Service] = [],
        onListening: @escaping @Sendable (String, Int) async -> Void = { _, _ in }
    ) -> some ApplicationProtocol {
        let c = configuration, metrics = metrics
        let http = HTTP1Channel.Configuration(
            additionalChannelHandlers: [HTTPParseErrorResponder(metrics: metrics)],
            idleTimeout: .nanoseconds(Int64(c.idleTimeoutSeconds * 1e9)),
            httpDecoderConfiguration: .init(maxHeaderFieldSize: c.maxHeaderBytes, maxHeaderListSize: c.maxHeaderBytes))
        return Application(
            router: makeRouter(),
            server: .http1(configuration: http),
            configuration: ApplicationConfiguration(
                address: .hostname(host, port: port), serverName: "swiftlet",
                availableConnectionsDelegate: MaximumAvailableConnections(c.maxConnections, logger: logger)),
            services: services,
            onServerRunning: { channel in await onListening(host, channel.localAddress?.port ?? port) },
            logger: logger)
    }

    func modelObject(_ model: ServedModel) -> ModelObject {
        ModelObject(id: model.id, created: model.created, ownedBy: "swiftlet")
    }

    /// Reads the body (413 over the limit) and decodes it, turning every decoding failure into a 400
    /// that names the parameter.
    func decodeBody<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        let limit = configuration.maxBodyBytes
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit {
            throw APIError.bodyTooLarge(limit: limit)
        }
        let buffer: ByteBuffer
        do {
            buffer = try await Self.collectBody(request, upTo: limit, within: configuration.bodyTimeoutSeconds)
        } catch let e as APIError {
            throw e
        } catch is NIOTooManyBytesError {
            throw APIError.bodyTooLarge(limit: limit)
        } catch let e as HTTPParserError where e != .invalidEOFState {
            throw APIError.invalidRequest("The request body is not valid HTTP/1.1 (\(e)).", code: "invalid_http")
        } catch {
            // The connection ended before the body did: the client went away, the server is fine.
            throw APIError.clientDisconnected
        }
        return try Self.decodeJSON(type, from: Data(buffer.readableBytesView))
    }

    /// The whole body, or 408 when it has not arrived within `seconds`.
    public static func collectBody(_ request: Request, upTo limit: Int, within seconds: Double) async throws -> ByteBuffer {
        try await withThrowingTaskGroup(of: ByteBuffer?.self) { group in
            group.addTask {
                var request = request
                return try await request.collectBody(upTo: limit)
            }
            group.addTask {
                try await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let body = first else {
                throw APIError(status: .requestTimeout, message: "The request body did not arrive within \(Int(seconds)) s.",
                               type: "invalid_request_error", code: "request_timeout")
            }
            return body
        }
    }

    /// Deepest nesting of a request body (a schema nested to the schema compiler's limit fits).
    public static let maxBodyDepth = 128

    /// Decodes a request body; every failure is an APIError (400) naming the parameter where possible.
    /// The body is parsed once in linear time (deeper than `maxBodyDepth`: 400 at once); the free-form
    /// values in it (schemas) are taken whole from that parse, with their keys in order.
    public static func decodeJSON<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        guard String(validating: data, as: UTF8.self) != nil else {
            throw APIError.invalidRequest("The request body is not valid UTF-8.", code: "invalid_json")
        }
        let decoder = JSONDecoder()
        do {
            decoder.userInfo[.jsonValueDocument] = try JSONValue.parse(Array(data), maxDepth: maxBodyDepth)
        } catch let e where e.tooDeep {
            throw APIError.invalidRequest(
                "The JSON body nests deeper than \(maxBodyDepth) levels\(e.topLevelKey.map { " (in '\($0)')" } ?? "").",
                param: e.topLevelKey, code: "json_too_deep")
        } catch {
            // Not JSON (or a number out of range): JSONDecoder below says what is wrong.
        }
        do {
            return try decoder.decode(T.self, from: data)
        } catch DecodingError.dataCorrupted(let ctx) where ctx.codingPath.isEmpty {
            if let error = JSONDiagnostics.unrepresentableNumber(in: Array(data)) { throw error }
            throw APIError.invalidJSON
        } catch let error as DecodingError {
            throw APIError.decoding(error)
        } catch {
            throw APIError.invalidJSON
        }
    }
}

/// Authentication, OpenAI-shaped errors for everything that goes wrong, and request metrics. The
/// console's static files are public (they hold no data); what they read is under /v1/.
public struct APIMiddleware: RouterMiddleware {
    public typealias Context = ServerRequestContext
    let server: OpenAIServer

    public init(server: OpenAIServer) { self.server = server }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let response: Response
        do {
            try authenticate(request)
            response = try await next(request, context)
        } catch {
            let apiError = classify(error, request: request, context: context)
            server.metrics.error(status: Int(apiError.status.code), code: apiError.code ?? apiError.type)
            if apiError == .clientDisconnected {
                context.logger.info("client disconnected while sending the request")
            }
            response = JSONResponse.make(status: apiError.status, apiError.body, headers: apiError.headers)
        }
        server.metrics.request(endpoint: context.endpointPath ?? "unmatched", status: Int(response.status.code))
        return response
    }

    private func authenticate(_ request: Request) throws {
        guard let key = server.configuration.apiKey, request.uri.path.hasPrefix("/v1/") else { return }
        guard let header = request.headers[.authorization] else { throw APIError.missingAPIKey }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { throw APIError.invalidAPIKey }
        guard constantTimeEqual(Array(parts[1].utf8), Array(key.utf8)) else { throw APIError.invalidAPIKey }
    }

    private func classify(_ error: Error, request: Request, context: Context) -> APIError {
        if let e = APIError.from(error) { return e }
        if let e = error as? HTTPError {
            if e.status == .notFound {
                let allowed = server.routes.methods(for: request.uri.path)
                if !allowed.isEmpty && !allowed.contains(request.method) {
                    return .methodNotAllowed(request.method, request.uri.path, allowed: allowed)
                }
                return .unknownURL(request.method, request.uri.path)
            }
            if e.status == .contentTooLarge { return .bodyTooLarge(limit: server.configuration.maxBodyBytes) }
            if e.status.code < 500 {
                return APIError(status: e.status, message: e.body ?? e.status.reasonPhrase, type: "invalid_request_error")
            }
        }
        if error is NIOTooManyBytesError { return .bodyTooLarge(limit: server.configuration.maxBodyBytes) }
        context.logger.error("request failed", metadata: ["error": "\(String(reflecting: error))"])
        return .internalError
    }
}

func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    var diff = UInt8(a.count == b.count ? 0 : 1)
    for i in 0..<max(a.count, b.count) {
        diff |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
    }
    return diff == 0
}

enum JSONResponse {
    static func encode(_ value: some Encodable) -> ByteBuffer {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Every type encoded here is made of strings, integers and finite floats.
        let data = (try? encoder.encode(value)) ?? Data(#"{"error":{"message":"encoding failed","type":"server_error","param":null,"code":null}}"#.utf8)
        return ByteBuffer(bytes: data)
    }

    static func make(status: HTTPResponse.Status, _ value: some Encodable, headers: HTTPFields = [:]) -> Response {
        var headers = headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: encode(value)))
    }
}
