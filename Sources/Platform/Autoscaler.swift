import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

/// Sizes each deployment between its min and max replicas from its demand: requests in flight on
/// its replicas plus requests waiting for one, over the target concurrency per replica.
/// Up at once; down one replica at a time, only after fewer have been enough for `scale_down_delay`
/// (hysteresis); to zero (when min is 0) after `scale_to_zero_after` without requests. It starts and
/// stops the workers of supervised clusters; replicas elsewhere count as capacity but are their own
/// hosts' business.
public final class Autoscaler: Service, Sendable {
    public struct Decision: Sendable, Equatable {
        public var desired: Int
        public var current: Int
    }

    struct Memory {
        var belowSince: [String: Double] = [:]
        var decisions: [String: Decision] = [:]
        var lastTick: Double?
        /// Replica bounds set at run time (by an admin in the console), over the config's.
        var bounds: [String: (min: Int, max: Int)] = [:]
    }

    let config: PlatformConfig
    let registry: ReplicaRegistry
    let supervisor: Supervisor
    let costs: CostMeter
    let hardware: HardwareLog
    let logger: Logger
    let interval: Double
    private let memory = NIOLockedValueBox(Memory())
    /// Serialises decisions that start or stop processes.
    private let scaling = NIOLock()

    public init(config: PlatformConfig, registry: ReplicaRegistry, supervisor: Supervisor, costs: CostMeter,
                hardware: HardwareLog = HardwareLog(), logger: Logger, interval: Double = 0.25) {
        self.config = config
        self.registry = registry
        self.supervisor = supervisor
        self.costs = costs
        self.hardware = hardware
        self.logger = logger
        self.interval = interval
    }

    public func decision(_ deployment: String) -> Decision? { memory.withLockedValue { $0.decisions[deployment] } }

    /// The deployment with the replica bounds in force now.
    public func effective(_ d: Deployment) -> Deployment {
        var d = d
        if let b = memory.withLockedValue({ $0.bounds[d.name] }) {
            d.minReplicas = b.min
            d.maxReplicas = b.max
        }
        return d
    }

    /// New replica bounds for a deployment until the gateway restarts; the next tick scales to them.
    public func setBounds(_ deployment: String, min: Int, max: Int) {
        memory.withLockedValue {
            $0.bounds[deployment] = (min, max)
            $0.belowSince[deployment] = nil
        }
    }

    /// Replicas that are or will be capacity: starting or ready (not draining or failed).
    static func live(_ replicas: [Replica]) -> [Replica] {
        replicas.filter { $0.state == .starting || $0.state == .ready }
    }

    /// How many replicas the deployment should have now.
    public static func desired(_ d: Deployment, demand: Int, idleFor: Double?, current: Int) -> Int {
        var want = (demand + d.targetConcurrency - 1) / d.targetConcurrency
        if demand == 0, current > 0, let idle = idleFor, idle < d.scaleToZeroAfter { want = 1 }
        if demand == 0, current > 0, idleFor == nil { want = 1 }
        return min(d.maxReplicas, max(d.minReplicas, want))
    }

    /// A request found no ready replica: start one now if none is on its way. False if none can come.
    public func coldStart(_ d: Deployment) -> Bool {
        scaling.withLock {
            if !Self.live(registry.replicas(of: d.name)).isEmpty { return true }
            guard let cluster = pickCluster(d) else { return false }
            do {
                _ = try supervisor.start(deployment: d, cluster: cluster)
                return true
            } catch SupervisorError.backingOff {
                return true
            } catch {
                logger.error("cold start of \(d.name) failed: \(error)")
                return false
            }
        }
    }

    /// The supervised cluster of the placement with the fewest live replicas (earlier ones first on ties).
    func pickCluster(_ d: Deployment) -> String? {
        let live = Self.live(registry.replicas(of: d.name))
        return d.placement
            .filter { config.cluster(named: $0)?.supervised == true }
            .enumerated()
            .min { a, b in
                (live.filter { $0.cluster == a.element }.count, a.offset) < (live.filter { $0.cluster == b.element }.count, b.offset)
            }?.element
    }

    public func run() async throws {
        // Workers register with the gateway's address: nothing starts before it listens (the services
        // start before the HTTP server binds).
        while !supervisor.isListening && !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(10))
        }
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            tick()
            try? await Task.sleep(for: .milliseconds(Int(interval * 1000)))
        }
    }

    func tick(now: Double = ReplicaRegistry.now()) {
        let dt = memory.withLockedValue { m in
            defer { m.lastTick = now }
            return m.lastTick.map { now - $0 } ?? 0
        }
        for d in config.deployments.map(effective) {
            let replicas = registry.replicas(of: d.name)
            let ready = replicas.filter { $0.state == .ready }
            let prices = ready.map { hardwarePrice(d, $0.cluster) }
            costs.held(d.name, seconds: dt, pricesPerHour: prices, now: now)
            hardware.add(d.name, replicaSeconds: dt * Double(prices.count), dollars: prices.reduce(0, +) * dt / 3600)
            scaling.withLock { scale(d, replicas: replicas, now: now) }
        }
    }

    func hardwarePrice(_ d: Deployment, _ cluster: String) -> Double {
        d.hardwarePricePerHour ?? config.cluster(named: cluster)?.hardwarePricePerHour ?? 0
    }

    private func scale(_ d: Deployment, replicas: [Replica], now: Double) {
        let live = Self.live(replicas)
        let demand = registry.demand(d.name)
        let idle = registry.lastRequest(d.name).map { now - $0 }
        let want = Self.desired(d, demand: demand, idleFor: idle, current: live.count)
        memory.withLockedValue { $0.decisions[d.name] = Decision(desired: want, current: live.count) }
        if want > live.count {
            memory.withLockedValue { $0.belowSince[d.name] = nil }
            for _ in live.count..<want {
                guard let cluster = pickCluster(d) else { break }
                do {
                    _ = try supervisor.start(deployment: d, cluster: cluster)
                } catch SupervisorError.backingOff {
                    break
                } catch SupervisorError.stopping {
                    break
                } catch {
                    logger.error("cannot start a replica of \(d.name): \(error)")
                    break
                }
            }
            return
        }
        let stoppable = live.filter(\.supervised)
        guard want < live.count, !stoppable.isEmpty else {
            memory.withLockedValue { $0.belowSince[d.name] = nil }
            return
        }
        // To zero: the idle period was the wait. Otherwise one at a time after the delay.
        if want == 0 {
            for r in stoppable { supervisor.stop(r.id) }
            logger.info("\(d.name): idle, scaling to zero")
            return
        }
        let since = memory.withLockedValue { m in
            if m.belowSince[d.name] == nil { m.belowSince[d.name] = now }
            return m.belowSince[d.name]!
        }
        guard now - since >= d.scaleDownDelay else { return }
        let victim = stoppable.min {
            ($0.state == .starting ? 0 : 1, $0.outstanding, $0.id) < ($1.state == .starting ? 0 : 1, $1.outstanding, $1.id)
        }!
        supervisor.stop(victim.id)
        logger.info("\(d.name): scaling down to \(live.count - 1) (demand \(demand))")
        memory.withLockedValue { $0.belowSince[d.name] = now }
    }
}
