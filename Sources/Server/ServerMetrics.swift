import CoreMetrics
import Engine
import Foundation
import NIOConcurrencyHelpers
import Prometheus

/// The server's metrics, recorded through swift-metrics into its own Prometheus registry (no global
/// bootstrap, so several servers can live in one process) and exposed at GET /metrics.
public final class ServerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory

    private let promptTokens: CoreMetrics.Counter
    private let generatedTokens: CoreMetrics.Counter
    private let timeToFirstToken: CoreMetrics.Timer
    private let timePerOutputToken: CoreMetrics.Timer
    private let waiting: CoreMetrics.Gauge
    private let running: CoreMetrics.Gauge
    private let cancelled: CoreMetrics.Counter
    /// The service's cancelled count at the last scrape: the counter grows by the difference.
    private let cancelledSeen = NIOLockedValueBox(0)

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = [
            "swiftlet_time_to_first_token_seconds":
                [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60].map { Duration.seconds($0) },
            "swiftlet_time_per_output_token_seconds":
                [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1].map { Duration.seconds($0) },
        ]
        self.factory = factory
        promptTokens = CoreMetrics.Counter(label: "swiftlet_prompt_tokens_total", factory: factory)
        generatedTokens = CoreMetrics.Counter(label: "swiftlet_generated_tokens_total", factory: factory)
        timeToFirstToken = CoreMetrics.Timer(label: "swiftlet_time_to_first_token_seconds", factory: factory)
        timePerOutputToken = CoreMetrics.Timer(label: "swiftlet_time_per_output_token_seconds", factory: factory)
        waiting = CoreMetrics.Gauge(label: "swiftlet_queue_waiting_sequences", factory: factory)
        running = CoreMetrics.Gauge(label: "swiftlet_running_sequences", factory: factory)
        cancelled = CoreMetrics.Counter(label: "swiftlet_sequences_cancelled_total", factory: factory)
    }

    /// One HTTP request answered. `endpoint` is the route pattern, never the raw path.
    func request(endpoint: String, status: Int) {
        CoreMetrics.Counter(label: "swiftlet_http_requests_total",
                dimensions: [("endpoint", endpoint), ("status", String(status))], factory: factory).increment()
    }

    func error(status: Int, code: String) {
        CoreMetrics.Counter(label: "swiftlet_errors_total", dimensions: [("status", String(status)), ("code", code)],
                factory: factory).increment()
    }

    func generated(tokens: Int) { generatedTokens.increment(by: tokens) }

    /// A finished sequence. `timeToFirstToken` is measured from the request's arrival (queueing included).
    func sequence(_ result: GenerationResult, timeToFirstToken ttft: Double?) {
        CoreMetrics.Counter(label: "swiftlet_sequences_total", dimensions: [("finish_reason", result.finishReason.rawValue)],
                factory: factory).increment()
        if let ttft { timeToFirstToken.recordNanoseconds(Int64(ttft * 1e9)) }
        if result.tokens.count > 1 {
            let perToken = (result.duration - result.timeToFirstToken) / Double(result.tokens.count - 1)
            if perToken.isFinite, perToken >= 0 { timePerOutputToken.recordNanoseconds(Int64(perToken * 1e9)) }
        }
    }

    func prompt(tokens: Int) { promptTokens.increment(by: tokens) }

    /// Prometheus text format, with the queue gauges read from `stats` now.
    func exposition(stats: ServiceStats?) -> [UInt8] {
        waiting.record(stats?.waiting ?? 0)
        running.record(stats?.running ?? 0)
        if let stats {
            let delta = cancelledSeen.withLockedValue { seen in
                defer { seen = max(seen, stats.cancelled) }
                return max(0, stats.cancelled - seen)
            }
            if delta > 0 { cancelled.increment(by: delta) }
        }
        return registry.emitToBuffer()
    }
}
