import ArgumentParser
import Engine
import Foundation
import Logging
import Server
import ServiceLifecycle

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the model over an OpenAI-compatible HTTP API.",
        discussion: "Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models[/ID], GET /health, "
            + "GET /ready, GET /metrics, and the web console at GET / (--api-key is its admin key). SIGINT/SIGTERM stop accepting connections and let requests in flight "
            + "finish (up to --shutdown-grace seconds).")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var serverOptions: ServerOptions

    @Option(name: .long, help: "Require 'Authorization: Bearer KEY' on /v1/* (default $SWIFTLET_API_KEY).")
    var apiKey: String?

    func run() async throws {
        bootstrapLogging()
        let key = apiKey ?? ProcessInfo.processInfo.environment["SWIFTLET_API_KEY"]
        try await serverOptions.run(modelOptions: modelOptions, apiKey: key, logger: Logger(label: "swiftlet"))
    }
}

func bootstrapLogging() {
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = .info
        return handler
    }
}

/// The options of the HTTP server and its batching engine, shared by `serve` and `worker`.
struct ServerOptions: ParsableArguments {
    @Option(name: .long, help: "Address to bind.")
    var host = "127.0.0.1"

    @Option(name: .long, help: "Port to bind (0 picks a free one; the log line 'listening on' tells which).")
    var port = 8080

    @Option(name: .long, help: "Requests that may wait to start; more get 429.")
    var maxQueue = 256

    @Option(name: .long, help: "KV cache size, e.g. 512MB or 2GiB (default: an eighth of RAM, at most 2 GiB).")
    var kvCacheMemory: String?

    @Option(name: .long, help: "Sequences generating at once (continuous batching).")
    var maxSequences = 64

    @Option(name: .long, help: "Tokens per engine step: decode tokens plus chunks of prompts.")
    var maxBatchTokens = 512

    @Flag(name: .long, help: "Do not reuse the KV cache of shared prompt prefixes.")
    var noPrefixCache = false

    @Option(name: .long, help: "Largest request body in bytes; larger ones get 413.")
    var maxBodyBytes = 4 << 20

    @Option(name: .long, help: "Seconds that requests in flight get to finish on shutdown.")
    var shutdownGrace = 30

    @Option(name: .long, help: ArgumentHelp(
        "Seconds a connection may stay silent before it is closed: while its request's headers or body are read, or between requests.",
        discussion: "A response being generated is not idle, however long it takes."))
    var idleTimeout: Double = 75

    @Option(name: .long, help: "Connections open at once; more wait to be accepted until one closes.")
    var maxConnections = 512

    @Option(name: .long, help: "Seconds a request body may take to arrive in full (408 after it, for clients that trickle bytes).")
    var bodyTimeout: Double = 60

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
        guard maxQueue >= 0 else { throw ValidationError("--max-queue must be >= 0") }
        guard maxSequences >= 1, maxSequences <= 4096 else { throw ValidationError("--max-sequences must be between 1 and 4096") }
        guard maxBatchTokens >= 1 else { throw ValidationError("--max-batch-tokens must be >= 1") }
        if let kvCacheMemory, ByteCount.parse(kvCacheMemory) == nil {
            throw ValidationError("--kv-cache-memory must be a size such as 536870912, 512MB or 2GiB")
        }
        guard maxBodyBytes > 0 else { throw ValidationError("--max-body-bytes must be positive") }
        guard shutdownGrace >= 0 else { throw ValidationError("--shutdown-grace must be >= 0") }
        guard idleTimeout.isFinite, idleTimeout > 0, idleTimeout <= 86400 else {
            throw ValidationError("--idle-timeout must be between 0 and 86400 seconds (excluding 0)")
        }
        guard maxConnections >= 1 else { throw ValidationError("--max-connections must be >= 1") }
        guard bodyTimeout.isFinite, bodyTimeout > 0, bodyTimeout <= 86400 else {
            throw ValidationError("--body-timeout must be between 0 and 86400 seconds (excluding 0)")
        }
    }

    var engineOptions: BatchEngine.Options {
        var o = BatchEngine.Options()
        o.kvCacheBytes = kvCacheMemory.flatMap(ByteCount.parse)
        o.maxSequences = maxSequences
        o.maxBatchTokens = maxBatchTokens
        o.maxWaiting = maxQueue
        o.prefixCaching = !noPrefixCache
        return o
    }

    /// Binds, loads the model, serves until SIGINT/SIGTERM, then drains. `aliases` are more names the
    /// model answers to; `companions(server)` are services that run beside it and stop first on shutdown.
    func run(
        modelOptions: ModelOptions, apiKey: String?, aliases: Set<String> = [], logger: Logger,
        onListening: @escaping @Sendable (String, Int) -> Void = { _, _ in },
        companions: (OpenAIServer) -> [any Service] = { _ in [] }
    ) async throws {
        let server = OpenAIServer(configuration: ServerConfiguration(
            apiKey: apiKey, maxBodyBytes: maxBodyBytes, idleTimeoutSeconds: idleTimeout, maxConnections: maxConnections,
            bodyTimeoutSeconds: bodyTimeout))
        let loader = ModelLoader(options: modelOptions, engineOptions: engineOptions, aliases: aliases, server: server,
                                 logger: logger)
        let app = server.makeApplication(host: host, port: port, logger: logger, services: [loader]) { host, port in
            logger.info("listening on http://\(host):\(port)")
            onListening(host, port)
        }
        if server.assets.isEmpty { logger.warning("web console unavailable: \(server.assets.origin)") }
        // The metrics feed shuts down first, ending the console's open feeds so that they do not hold the drain.
        var config = ServiceGroupConfiguration(services: [app] + companions(server) + [server.feed], logger: logger)
        config.gracefulShutdownSignals = [.sigterm, .sigint]
        config.maximumGracefulShutdownDuration = .seconds(shutdownGrace)
        do {
            try await ServiceGroup(configuration: config).run()
        } catch {
            logger.error("\(error)")
            throw ExitCode.failure
        }
        logger.info("stopped")
    }
}

/// Loads the model after the server is up (GET /ready turns 200 then). Listed before the HTTP server,
/// it shuts down after it: once requests in flight are done, the generation thread stops.
struct ModelLoader: Service {
    let options: ModelOptions
    let engineOptions: BatchEngine.Options
    let aliases: Set<String>
    let server: OpenAIServer
    let logger: Logger

    func run() async throws {
        let options = self.options
        logger.info("loading model \(options.model)")
        let loaded = try await onThread { try options.loadAny() }
        guard case .generation(let engine) = loaded else {
            if case .embedding(let embedder) = loaded { try await serveEmbeddings(embedder) }
            return
        }
        let metrics = server.metrics
        let service = try BatchEngine(engine: engine, options: engineOptions) { step in
            metrics.step(sequences: step.sequences, tokens: step.tokens)
        }
        let kv = service.stats
        logger.info("KV cache: \(kv.kvBlocksTotal) blocks of \(kv.kvBlockSize) tokens (\(service.maxSequenceTokens) tokens per request at most), prefix cache \(engineOptions.prefixCaching ? "on" : "off")")
        server.setModel(ServedModel(id: engine.modelName, aliases: aliases(fileName: engine.gguf.path), engine: engine, service: service))
        logger.info("model \(engine.modelName) ready (context \(min(engine.contextLength, service.maxSequenceTokens)) tokens)")

        try? await gracefulShutdown()
        service.shutdown()
        await onThread { service.waitUntilStopped() }
    }

    /// An embedding model: /v1/embeddings batches its inputs; the completion endpoints refuse it.
    func serveEmbeddings(_ engine: EmbeddingEngine) async throws {
        let service = EmbeddingService(engine: engine)
        server.setModel(ServedModel(id: engine.modelName, aliases: aliases(fileName: engine.gguf.path), backend: .embedding(service)))
        let m = engine.model
        logger.info("embedding model \(engine.modelName) ready (\(m.dimensions) dimensions, \(m.pooling) pooling, up to \(engine.contextLength) tokens per input)")
        try? await gracefulShutdown()
        service.shutdown()
    }

    func aliases(fileName path: String) -> Set<String> {
        var aliases = aliases
        if options.modelPackage == nil { aliases.insert(options.model) }
        let fileName = URL(fileURLWithPath: path).lastPathComponent
        for known in ModelStore.knownModels.values where known.fileName == fileName { aliases.insert(known.name) }
        return aliases
    }
}

/// Runs blocking work (model loading, thread joins) on a thread of its own, off the concurrency pool.
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

func onThread(_ body: @escaping @Sendable () -> Void) async {
    await withCheckedContinuation { continuation in
        Thread {
            body()
            continuation.resume()
        }.start()
    }
}
