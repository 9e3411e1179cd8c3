import Engine
import Foundation
import NIOConcurrencyHelpers

public enum ReplicaState: String, Sendable, Codable {
    /// Process started (by the supervisor) or registered, model not ready yet.
    case starting
    case ready
    /// Finishing its requests before it stops; gets no new ones.
    case draining
    /// Stopped answering (heartbeats late); forgotten after a while.
    case failed
}

public struct Replica: Sendable, Equatable {
    public var id: String
    public var deployment: String
    public var cluster: String
    /// Base URL of its OpenAI API, e.g. http://127.0.0.1:41234 (nil until it registers).
    public var url: String?
    public var pid: Int32?
    /// Started by this gateway's supervisor.
    public var supervised: Bool
    public var state: ReplicaState
    public var load = EngineLoad()
    public var outstanding = 0
    /// Failed probes or connections in a row.
    public var consecutiveFailures = 0
    /// Gets no traffic until a probe succeeds.
    public var ejected = false
    public var requests = 0
    public var failures = 0
    public var createdAt: Double
    public var lastSeen: Double
    public var readyAt: Double?

    public var routable: Bool { state == .ready && !ejected && url != nil }
}

/// Replicas by deployment and cluster: their state, load, health and the gateway's outstanding
/// requests on each. All methods are atomic; `now` is seconds on a monotonic clock.
public final class ReplicaRegistry: Sendable {
    struct State {
        var replicas: [String: Replica] = [:]
        var lastRequestAt: [String: Double] = [:]
        /// Requests waiting for a replica of a deployment to be ready.
        var waiting: [String: Int] = [:]
        var ejections = 0
        /// Per deployment: the model facts its last registered replica reported (kept at zero replicas).
        var facts: [String: ModelFacts] = [:]
    }

    public func facts(_ deployment: String) -> ModelFacts? { state.withLockedValue { $0.facts[deployment] } }

    private let state = NIOLockedValueBox(State())
    public let unhealthyAfter: Int

    public init(unhealthyAfter: Int = 3) {
        self.unhealthyAfter = unhealthyAfter
    }

    public static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    /// A process the supervisor just started: counted as capacity coming, not routable yet.
    public func addStarting(id: String, deployment: String, cluster: String, pid: Int32, now: Double = now()) {
        state.withLockedValue {
            $0.replicas[id] = Replica(id: id, deployment: deployment, cluster: cluster, url: nil, pid: pid,
                                      supervised: true, state: .starting, createdAt: now, lastSeen: now)
        }
    }

    /// A replica announcing itself (again, after a gateway restart or a missed heartbeat is fine).
    @discardableResult
    public func register(id: String, deployment: String, cluster: String, url: String, pid: Int32?,
                         state replicaState: ReplicaState, load: EngineLoad, facts: ModelFacts? = nil,
                         now: Double = now()) -> Replica {
        state.withLockedValue { s in
            if let facts { s.facts[deployment] = facts }
            var r = s.replicas[id] ?? Replica(id: id, deployment: deployment, cluster: cluster, url: url, pid: pid,
                                              supervised: false, state: replicaState, createdAt: now, lastSeen: now)
            r.deployment = deployment
            r.cluster = cluster
            r.url = url
            r.pid = pid ?? r.pid
            r.state = replicaState
            r.load = load
            r.lastSeen = now
            r.ejected = false
            r.consecutiveFailures = 0
            if replicaState == .ready, r.readyAt == nil { r.readyAt = now }
            s.replicas[id] = r
            return r
        }
    }

    /// False when the replica is unknown (it should register again).
    public func heartbeat(id: String, state replicaState: ReplicaState, load: EngineLoad, now: Double = now()) -> Bool {
        state.withLockedValue { s in
            guard var r = s.replicas[id], r.url != nil else { return false }
            r.load = load
            r.lastSeen = now
            if r.state == .failed || r.state == .starting || replicaState == .draining { r.state = replicaState }
            if r.state == .ready, r.readyAt == nil { r.readyAt = now }
            s.replicas[id] = r
            return true
        }
    }

    public func setState(_ id: String, _ replicaState: ReplicaState) {
        state.withLockedValue { $0.replicas[id]?.state = replicaState }
    }

    public func remove(_ id: String) {
        _ = state.withLockedValue { $0.replicas.removeValue(forKey: id) }
    }

    public func replica(_ id: String) -> Replica? { state.withLockedValue { $0.replicas[id] } }

    public func replicas(of deployment: String? = nil) -> [Replica] {
        state.withLockedValue { s in
            s.replicas.values.filter { deployment == nil || $0.deployment == deployment }.sorted { $0.id < $1.id }
        }
    }

    /// Chooses a replica for a request and counts it outstanding there; nil when none is routable.
    public func acquire(deployment: Deployment, affinityKey: String?, excluding: Set<String>, now: Double = now()) -> Replica? {
        state.withLockedValue { s in
            s.lastRequestAt[deployment.name] = now
            let candidates = s.replicas.values
                .filter { $0.deployment == deployment.name && $0.routable && !excluding.contains($0.id) }
                .map { RoutingCandidate(id: $0.id, cluster: $0.cluster, outstanding: $0.outstanding,
                                        reportedLoad: $0.load.running + $0.load.waiting) }
            guard let pick = RoutingPolicy.choose(candidates, placement: deployment.placement,
                                           targetConcurrency: deployment.targetConcurrency, affinityKey: affinityKey),
                  var r = s.replicas[pick.id] else { return nil }
            r.outstanding += 1
            r.requests += 1
            s.replicas[pick.id] = r
            return r
        }
    }

    /// A request on the replica ended. A connection-level failure ejects it at once (passive outlier
    /// ejection); a probe that succeeds brings it back.
    public func release(_ id: String, connectionFailed: Bool = false, now: Double = now()) {
        state.withLockedValue { s in
            guard var r = s.replicas[id] else { return }
            r.outstanding = max(0, r.outstanding - 1)
            if connectionFailed {
                r.failures += 1
                r.consecutiveFailures = max(r.consecutiveFailures + 1, unhealthyAfter)
                if !r.ejected {
                    r.ejected = true
                    s.ejections += 1
                }
            }
            s.replicas[id] = r
            s.lastRequestAt[r.deployment] = now
        }
    }

    /// Result of an active health check.
    public func probed(_ id: String, ok: Bool, loading: Bool = false) {
        state.withLockedValue { s in
            guard var r = s.replicas[id] else { return }
            if ok {
                r.consecutiveFailures = 0
                r.ejected = false
                if r.state == .failed { r.state = .ready }
            } else if loading {
                r.state = r.state == .draining ? .draining : .starting
            } else {
                r.consecutiveFailures += 1
                if r.consecutiveFailures >= unhealthyAfter, !r.ejected {
                    r.ejected = true
                    s.ejections += 1
                }
            }
            s.replicas[id] = r
        }
    }

    /// Replicas silent for `timeout` are failed; those failed and silent for `3 x timeout` are forgotten
    /// (supervised ones are forgotten when their process exits). Returns the ids forgotten.
    @discardableResult
    public func expire(timeout: Double, now: Double = now()) -> [String] {
        state.withLockedValue { s in
            var forgotten: [String] = []
            for (id, var r) in s.replicas where r.url != nil {
                let silent = now - r.lastSeen
                if silent > 3 * timeout && !r.supervised {
                    s.replicas[id] = nil
                    forgotten.append(id)
                } else if silent > timeout && r.state != .failed {
                    r.state = .failed
                    s.replicas[id] = r
                }
            }
            return forgotten
        }
    }

    public func lastRequest(_ deployment: String) -> Double? { state.withLockedValue { $0.lastRequestAt[deployment] } }

    public func markActivity(_ deployment: String, now: Double = now()) {
        state.withLockedValue { $0.lastRequestAt[deployment] = now }
    }

    /// Requests in flight on the deployment's replicas plus those waiting for one to start.
    public func demand(_ deployment: String) -> Int {
        state.withLockedValue { s in
            s.replicas.values.filter { $0.deployment == deployment }.reduce(0) { $0 + $1.outstanding }
                + (s.waiting[deployment] ?? 0)
        }
    }

    public func waitingForReplica(_ deployment: String, _ delta: Int) {
        state.withLockedValue { $0.waiting[deployment, default: 0] += delta }
    }

    /// Requests of the deployment waiting for a replica now.
    public func waitingForReplica(_ deployment: String) -> Int {
        state.withLockedValue { $0.waiting[deployment] ?? 0 }
    }

    public var ejections: Int { state.withLockedValue { $0.ejections } }
}
