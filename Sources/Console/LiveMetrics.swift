import Foundation
import NIOConcurrencyHelpers

/// Counters and recent latencies of generation requests, recorded by the server or the gateway as
/// requests run, for the console's live metrics. (Prometheus has the same facts as histograms; these
/// keep the raw recent values so that percentiles over the last minute are exact.)
public final class LiveMetrics: Sendable {
    public struct Totals: Sendable, Equatable {
        public var requests = 0
        /// Requests answered with a status of 400 or more, and streams that broke after they began.
        public var errors = 0
        public var promptTokens = 0
        public var completionTokens = 0

        public init(requests: Int = 0, errors: Int = 0, promptTokens: Int = 0, completionTokens: Int = 0) {
            self.requests = requests
            self.errors = errors
            self.promptTokens = promptTokens
            self.completionTokens = completionTokens
        }
    }

    struct Observation {
        var time: Double
        var value: Double
    }

    struct State {
        var totals = Totals()
        var ttft: [Observation] = []
        var tpot: [Observation] = []
    }

    private let state = NIOLockedValueBox(State())
    /// Seconds of latencies the percentiles cover.
    public let window: Double
    /// Most latencies kept per kind (the oldest go first).
    public let capacity: Int

    public init(window: Double = 60, capacity: Int = 20_000) {
        self.window = window
        self.capacity = capacity
    }

    public static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    /// A generation request answered (with its HTTP status).
    public func request(status: Int) {
        state.withLockedValue {
            $0.totals.requests += 1
            if status >= 400 { $0.totals.errors += 1 }
        }
    }

    /// A failure after the response had begun (a broken stream).
    public func error() { state.withLockedValue { $0.totals.errors += 1 } }

    public func tokens(prompt: Int = 0, completion: Int = 0) {
        state.withLockedValue {
            $0.totals.promptTokens += max(0, prompt)
            $0.totals.completionTokens += max(0, completion)
        }
    }

    public func timeToFirstToken(_ seconds: Double, now: Double = now()) {
        guard seconds.isFinite, seconds >= 0 else { return }
        state.withLockedValue { Self.append(&$0.ttft, Observation(time: now, value: seconds), capacity: capacity) }
    }

    public func timePerOutputToken(_ seconds: Double, now: Double = now()) {
        guard seconds.isFinite, seconds >= 0 else { return }
        state.withLockedValue { Self.append(&$0.tpot, Observation(time: now, value: seconds), capacity: capacity) }
    }

    private static func append(_ list: inout [Observation], _ o: Observation, capacity: Int) {
        list.append(o)
        if list.count > capacity { list.removeFirst(list.count - capacity) }
    }

    public var totals: Totals { state.withLockedValue { $0.totals } }

    /// Percentiles of the latencies seen in the last `window` seconds (nil without any).
    public func latencies(now: Double = now()) -> (ttft: Percentiles?, tpot: Percentiles?) {
        state.withLockedValue { s in
            let cutoff = now - window
            s.ttft.removeAll { $0.time < cutoff }
            s.tpot.removeAll { $0.time < cutoff }
            return (Percentiles(s.ttft.map(\.value)), Percentiles(s.tpot.map(\.value)))
        }
    }
}

/// p50, p90 and p99 by nearest rank, with the count they come from.
public struct Percentiles: Sendable, Equatable, Codable {
    public var p50: Double
    public var p90: Double
    public var p99: Double
    public var count: Int

    public init?(_ values: [Double]) {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        func rank(_ q: Double) -> Double {
            sorted[min(sorted.count - 1, max(0, Int((q * Double(sorted.count)).rounded(.up)) - 1))]
        }
        p50 = rank(0.5)
        p90 = rank(0.9)
        p99 = rank(0.99)
        count = sorted.count
    }
}
