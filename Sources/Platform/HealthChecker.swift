import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import ServiceLifecycle

/// Probes every registered replica's GET /ready at an interval: failures in a row eject it, a
/// success re-admits it. Replicas whose heartbeats stop are marked failed, then forgotten.
public struct HealthChecker: Service {
    let registry: ReplicaRegistry
    let client: HTTPClient
    let interval: Double
    let heartbeatTimeout: Double
    let logger: Logger

    public init(registry: ReplicaRegistry, client: HTTPClient, interval: Double, heartbeatTimeout: Double, logger: Logger) {
        self.registry = registry
        self.client = client
        self.interval = interval
        self.heartbeatTimeout = heartbeatTimeout
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            await probeAll()
            for id in registry.expire(timeout: heartbeatTimeout) {
                logger.warning("replica \(id) sent no heartbeat for \(Int(3 * heartbeatTimeout)) s; forgotten")
            }
            try? await Task.sleep(for: .milliseconds(Int(interval * 1000)))
        }
    }

    func probeAll() async {
        let targets = registry.replicas().filter { $0.url != nil && $0.state != .failed }
        let timeout = TimeAmount.milliseconds(Int64(max(200, min(2000, interval * 1000))))
        await withTaskGroup(of: Void.self) { group in
            for r in targets {
                group.addTask {
                    let before = r.ejected
                    do {
                        let response = try await client.execute(HTTPClientRequest(url: r.url! + "/ready"), timeout: timeout)
                        _ = try? await response.body.collect(upTo: 1 << 16)
                        registry.probed(r.id, ok: response.status == .ok, loading: response.status == .serviceUnavailable)
                    } catch {
                        registry.probed(r.id, ok: false)
                    }
                    if let after = registry.replica(r.id), after.ejected != before {
                        if after.ejected {
                            logger.warning("replica \(r.id) ejected after \(after.consecutiveFailures) failed probes")
                        } else {
                            logger.info("replica \(r.id) healthy again")
                        }
                    }
                }
            }
        }
    }
}
