import Foundation
import NIOConcurrencyHelpers

/// What a deployment really costs: the hardware its replicas held over a window, divided by the
/// tokens they produced in it. Idle replicas cost money and make no tokens, so the measured price per
/// token rises with idle capacity and falls towards the hardware's limit under full load.
public struct CostReport: Sendable, Equatable, Codable {
    public var windowSeconds: Double
    public var tokens: Int
    public var replicaHours: Double
    public var hardwareDollars: Double
    public var tokensPerHour: Double
    /// Dollars per million tokens (prompt and completion); nil before any token was served.
    public var measuredPerMillion: Double?

    enum CodingKeys: String, CodingKey {
        case windowSeconds = "window_seconds", tokens, replicaHours = "replica_hours"
        case hardwareDollars = "hardware_dollars", tokensPerHour = "tokens_per_hour"
        case measuredPerMillion = "measured_cost_per_million_tokens"
    }
}

public final class CostMeter: Sendable {
    struct Sample {
        var time: Double
        var tokens: Int
        var replicaSeconds: Double
        var dollars: Double
    }

    private let samples = NIOLockedValueBox<[String: [Sample]]>([:])
    private let started: Double
    public let window: Double

    public init(window: Double, now: Double = ReplicaRegistry.now()) {
        self.window = window
        started = now
    }

    /// Tokens (prompt + completion) served by the deployment.
    public func served(_ deployment: String, tokens: Int, now: Double = ReplicaRegistry.now()) {
        guard tokens > 0 else { return }
        append(deployment, Sample(time: now, tokens: tokens, replicaSeconds: 0, dollars: 0), now: now)
    }

    /// `seconds` of replicas held, at the given hardware prices per hour (one entry per replica).
    public func held(_ deployment: String, seconds: Double, pricesPerHour: [Double], now: Double = ReplicaRegistry.now()) {
        guard seconds > 0, !pricesPerHour.isEmpty else { return }
        let dollars = pricesPerHour.reduce(0, +) * seconds / 3600
        append(deployment, Sample(time: now, tokens: 0, replicaSeconds: seconds * Double(pricesPerHour.count), dollars: dollars), now: now)
    }

    private func append(_ deployment: String, _ sample: Sample, now: Double) {
        samples.withLockedValue { all in
            var list = all[deployment] ?? []
            list.append(sample)
            if let first = list.first, first.time < now - window {
                list.removeAll { $0.time < now - window }
            }
            all[deployment] = list
        }
    }

    public func report(_ deployment: String, now: Double = ReplicaRegistry.now()) -> CostReport {
        let list = samples.withLockedValue { $0[deployment] ?? [] }.filter { $0.time >= now - window }
        let span = max(1e-9, min(window, now - started))
        let tokens = list.reduce(0) { $0 + $1.tokens }
        let dollars = list.reduce(0) { $0 + $1.dollars }
        let replicaSeconds = list.reduce(0) { $0 + $1.replicaSeconds }
        return CostReport(
            windowSeconds: span, tokens: tokens, replicaHours: replicaSeconds / 3600, hardwareDollars: dollars,
            tokensPerHour: Double(tokens) / span * 3600,
            measuredPerMillion: tokens > 0 ? dollars / Double(tokens) * 1e6 : nil)
    }
}

/// Hardware time held by each deployment, gathered per minute in memory and written to the ledger's
/// database now and then, so that measured costs can be given for any period, not only the live window.
public final class HardwareLog: Sendable {
    private let pending = NIOLockedValueBox<[String: HardwareTime]>([:])

    public init() {}

    public func add(_ deployment: String, replicaSeconds: Double, dollars: Double, at date: Date = Date()) {
        guard replicaSeconds > 0 else { return }
        let minute = HardwareTime.minute(date)
        pending.withLockedValue { p in
            let key = "\(deployment)\u{0}\(minute)"
            var e = p[key] ?? HardwareTime(deployment: deployment, minute: minute, replicaSeconds: 0, dollars: 0)
            e.replicaSeconds += replicaSeconds
            e.dollars += dollars
            p[key] = e
        }
    }

    /// Writes what was gathered; on failure it is kept for the next try.
    public func flush(to ledger: Ledger) async throws {
        let entries = pending.withLockedValue { p in
            defer { p = [:] }
            return Array(p.values)
        }
        do {
            try await ledger.recordHardware(entries)
        } catch {
            for e in entries { add(e.deployment, replicaSeconds: e.replicaSeconds, dollars: e.dollars,
                                   at: Date(timeIntervalSince1970: Double(e.minute) * 60)) }
            throw error
        }
    }
}
