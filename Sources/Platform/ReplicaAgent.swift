#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import AsyncHTTPClient
import Engine
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import ServiceLifecycle

/// The worker's side of the platform: once the model is loaded it registers the replica with the
/// gateway, then sends a heartbeat with its load every `interval`. It registers again whenever the
/// gateway does not know it (a restarted gateway), keeps trying while the gateway is unreachable,
/// and deregisters first on shutdown so that no new request arrives while it drains.
public struct ReplicaAgent: Service {
    public struct Identity: Sendable {
        public var id: String
        public var deployment: String
        public var cluster: String
        public var gateway: String
        public var token: String

        public init(id: String, deployment: String, cluster: String, gateway: String, token: String) {
            self.id = id
            self.deployment = deployment
            self.cluster = cluster
            self.gateway = gateway.hasSuffix("/") ? String(gateway.dropLast()) : gateway
            self.token = token
        }
    }

    let identity: Identity
    /// The replica's own base URL, once its server listens.
    let advertisedURL: NIOLockedValueBox<String?>
    /// The engine's figures; nil until the model is loaded.
    let stats: @Sendable () -> ServiceStats?
    /// The loaded model's parameters, sent when registering (the console shows them per deployment).
    let facts: @Sendable () -> ModelFacts?
    let interval: Double
    /// Exit (SIGTERM to itself) when the parent process goes away: a supervised worker never outlives its gateway.
    let exitWithParent: Bool
    let logger: Logger

    public init(identity: Identity, advertisedURL: NIOLockedValueBox<String?>, interval: Double = 1,
                exitWithParent: Bool, logger: Logger, facts: @escaping @Sendable () -> ModelFacts? = { nil },
                stats: @escaping @Sendable () -> ServiceStats?) {
        self.identity = identity
        self.facts = facts
        self.advertisedURL = advertisedURL
        self.stats = stats
        self.interval = interval
        self.exitWithParent = exitWithParent
        self.logger = logger
    }

    struct Registration: Encodable {
        var id: String
        var deployment: String
        var cluster: String
        var url: String
        var pid: Int32
        var state: ReplicaState
        var load: EngineLoad
        var modelFacts: ModelFacts?
        enum CodingKeys: String, CodingKey {
            case id, deployment, cluster, url, pid, state, load, modelFacts = "model_facts"
        }
    }

    struct Heartbeat: Encodable {
        var state: ReplicaState
        var load: EngineLoad
    }

    public func run() async throws {
        let parent = getppid()
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        var registered = false
        var reportedUnreachable = false
        var nextBeat = 0.0
        var orphaned = false
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            if exitWithParent && !orphaned && getppid() != parent {
                orphaned = true
                logger.warning("the gateway (pid \(parent)) is gone; stopping")
                kill(getpid(), SIGTERM)
            }
            let now = ReplicaRegistry.now()
            if let url = advertisedURL.withLockedValue({ $0 }), let s = stats(), now >= nextBeat {
                let load = EngineLoad(s)
                do {
                    if !registered {
                        let body = Registration(id: identity.id, deployment: identity.deployment, cluster: identity.cluster,
                                                url: url, pid: getpid(), state: .ready, load: load, modelFacts: facts())
                        let status = try await send(client, .POST, "/internal/replicas", body)
                        guard status == 200 else {
                            logger.error("the gateway refused the registration (HTTP \(status)); retrying")
                            nextBeat = now + 2
                            continue
                        }
                        registered = true
                        logger.info("registered with \(identity.gateway) as \(identity.id)")
                    } else {
                        let status = try await send(client, .POST, "/internal/replicas/\(identity.id)/heartbeat",
                                                    Heartbeat(state: .ready, load: load))
                        if status == 404 {
                            registered = false
                            continue
                        }
                    }
                    if reportedUnreachable {
                        logger.info("the gateway is reachable again")
                        reportedUnreachable = false
                    }
                    nextBeat = now + interval
                } catch {
                    if !reportedUnreachable {
                        logger.warning("cannot reach the gateway at \(identity.gateway): \(error); retrying")
                        reportedUnreachable = true
                    }
                    registered = false
                    nextBeat = now + min(interval, 0.5)
                }
            }
            try? await Task.sleep(for: .milliseconds(registered ? 50 : 5))
        }
        if registered {
            _ = try? await send(client, .DELETE, "/internal/replicas/\(identity.id)", Optional<Heartbeat>.none, timeout: .seconds(1))
            logger.info("deregistered from the gateway")
        }
        try? await client.shutdown()
    }

    func send(_ client: HTTPClient, _ method: HTTPMethod, _ path: String, _ body: (some Encodable)?,
              timeout: TimeAmount = .seconds(5)) async throws -> Int {
        var request = HTTPClientRequest(url: identity.gateway + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(identity.token)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
        }
        let response = try await client.execute(request, timeout: timeout)
        _ = try await response.body.collect(upTo: 1 << 20)
        return Int(response.status.code)
    }
}
