import Console
import CoreMetrics
import Engine
import Foundation
import NIOConcurrencyHelpers
import Prometheus

/// The server's metrics, recorded through swift-metrics into its own Prometheus registry (no global
/// bootstrap, so several servers can live in one process) and exposed at GET /metrics.
public final class ServerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    /// The same events, kept raw for the console's live charts.
    public let live: LiveMetrics
    private let factory: PrometheusMetricsFactory

    private let promptTokens: CoreMetrics.Counter
    private let generatedTokens: CoreMetrics.Counter
    private let timeToFirstToken: CoreMetrics.Timer
    private let timePerOutputToken: CoreMetrics.Timer
    private let waiting: CoreMetrics.Gauge
    private let running: CoreMetrics.Gauge
    private let kvBlocksTotal: CoreMetrics.Gauge
    private let kvBlocksUsed: CoreMetrics.Gauge
    private let kvBlocksFree: CoreMetrics.Gauge
    private let kvBlocksCached: CoreMetrics.Gauge
    private let kvSlidingBlocksTotal: CoreMetrics.Gauge
    private let kvSlidingBlocksUsed: CoreMetrics.Gauge
    private let prefixHitRate: CoreMetrics.Gauge
    private let batchSequences: CoreMetrics.Recorder
    private let batchTokens: CoreMetrics.Recorder
    private let steps: CoreMetrics.Counter
    /// Totals the service keeps, turned into counters that grow by the difference at each scrape.
    private let totals: [(label: String, value: @Sendable (ServiceStats) -> Int, counter: CoreMetrics.Counter)]
    private let totalsSeen: NIOLockedValueBox<[Int]>
    private let expertsSeen: NIOLockedValueBox<[Int]>

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(), live: LiveMetrics = LiveMetrics()) {
        self.registry = registry
        self.live = live
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = [
            "swiftlet_time_to_first_token_seconds":
                [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60].map { Duration.seconds($0) },
            "swiftlet_time_per_output_token_seconds":
                [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1].map { Duration.seconds($0) },
        ]
        factory.valueHistogramBuckets = [
            "swiftlet_batch_sequences": [1, 2, 4, 8, 16, 32, 64, 128],
            "swiftlet_batch_tokens": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
        ]
        self.factory = factory
        promptTokens = CoreMetrics.Counter(label: "swiftlet_prompt_tokens_total", factory: factory)
        generatedTokens = CoreMetrics.Counter(label: "swiftlet_generated_tokens_total", factory: factory)
        timeToFirstToken = CoreMetrics.Timer(label: "swiftlet_time_to_first_token_seconds", factory: factory)
        timePerOutputToken = CoreMetrics.Timer(label: "swiftlet_time_per_output_token_seconds", factory: factory)
        waiting = CoreMetrics.Gauge(label: "swiftlet_queue_waiting_sequences", factory: factory)
        running = CoreMetrics.Gauge(label: "swiftlet_running_sequences", factory: factory)
        kvBlocksTotal = CoreMetrics.Gauge(label: "swiftlet_kv_blocks_total", factory: factory)
        kvBlocksUsed = CoreMetrics.Gauge(label: "swiftlet_kv_blocks_used", factory: factory)
        kvBlocksFree = CoreMetrics.Gauge(label: "swiftlet_kv_blocks_free", factory: factory)
        kvBlocksCached = CoreMetrics.Gauge(label: "swiftlet_kv_blocks_cached", factory: factory)
        kvSlidingBlocksTotal = CoreMetrics.Gauge(label: "swiftlet_kv_sliding_blocks_total", factory: factory)
        kvSlidingBlocksUsed = CoreMetrics.Gauge(label: "swiftlet_kv_sliding_blocks_used", factory: factory)
        prefixHitRate = CoreMetrics.Gauge(label: "swiftlet_prefix_cache_hit_rate", factory: factory)
        batchSequences = CoreMetrics.Recorder(label: "swiftlet_batch_sequences", factory: factory)
        batchTokens = CoreMetrics.Recorder(label: "swiftlet_batch_tokens", factory: factory)
        steps = CoreMetrics.Counter(label: "swiftlet_engine_steps_total", factory: factory)
        let totals: [(String, @Sendable (ServiceStats) -> Int)] = [
            ("swiftlet_sequences_cancelled_total", { $0.cancelled }),
            ("swiftlet_preemptions_total", { $0.preemptions }),
            ("swiftlet_prefix_cache_lookups_total", { $0.prefixLookups }),
            ("swiftlet_prefix_cache_hits_total", { $0.prefixHits }),
        ]
        self.totals = totals.map { ($0.0, $0.1, CoreMetrics.Counter(label: $0.0, factory: factory)) }
        totalsSeen = NIOLockedValueBox([Int](repeating: 0, count: totals.count))
        expertsSeen = NIOLockedValueBox([])
    }

    /// One engine step: how many sequences and tokens it ran (batch size histograms).
    public func step(sequences: Int, tokens: Int) {
        steps.increment()
        batchSequences.record(sequences)
        batchTokens.record(tokens)
    }

    /// One HTTP request answered. `endpoint` is the route pattern, never the raw path.
    func request(endpoint: String, status: Int) {
        if Self.generationEndpoints.contains(endpoint) { live.request(status: status) }
        CoreMetrics.Counter(label: "swiftlet_http_requests_total",
                dimensions: [("endpoint", endpoint), ("status", String(status))], factory: factory).increment()
    }

    func error(status: Int, code: String) {
        CoreMetrics.Counter(label: "swiftlet_errors_total", dimensions: [("status", String(status)), ("code", code)],
                factory: factory).increment()
    }

    static let generationEndpoints: Set<String> = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]

    func generated(tokens: Int) {
        generatedTokens.increment(by: tokens)
        live.tokens(completion: tokens)
    }

    /// A finished sequence. `timeToFirstToken` is measured from the request's arrival (queueing included).
    func sequence(_ result: GenerationResult, timeToFirstToken ttft: Double?) {
        CoreMetrics.Counter(label: "swiftlet_sequences_total", dimensions: [("finish_reason", result.finishReason.rawValue)],
                factory: factory).increment()
        if let ttft {
            timeToFirstToken.recordNanoseconds(Int64(ttft * 1e9))
            live.timeToFirstToken(ttft)
        }
        if result.tokens.count > 1 {
            let perToken = (result.duration - result.timeToFirstToken) / Double(result.tokens.count - 1)
            if perToken.isFinite, perToken >= 0 {
                timePerOutputToken.recordNanoseconds(Int64(perToken * 1e9))
                live.timePerOutputToken(perToken)
            }
        }
    }

    func prompt(tokens: Int) {
        promptTokens.increment(by: tokens)
        live.tokens(prompt: tokens)
    }

    /// Prometheus text format, with the queue and KV gauges read from `stats` now.
    func exposition(stats: ServiceStats?) -> [UInt8] {
        let s = stats ?? ServiceStats(running: 0, waiting: 0)
        waiting.record(s.waiting)
        running.record(s.running)
        kvBlocksTotal.record(s.kvBlocksTotal)
        kvBlocksUsed.record(s.kvBlocksUsed)
        kvBlocksFree.record(s.kvBlocksTotal - s.kvBlocksUsed)
        kvBlocksCached.record(s.kvBlocksCached)
        kvSlidingBlocksTotal.record(s.kvSlidingBlocksTotal)
        kvSlidingBlocksUsed.record(s.kvSlidingBlocksUsed)
        prefixHitRate.record(s.prefixHitRate)
        let deltas = totalsSeen.withLockedValue { seen in
            totals.indices.map { i in
                let now = totals[i].value(s)
                defer { seen[i] = max(seen[i], now) }
                return max(0, now - seen[i])
            }
        }
        for (i, d) in deltas.enumerated() where d > 0 { totals[i].counter.increment(by: d) }
        // Tokens per expert, as counters labelled by expert.
        let expertDeltas = expertsSeen.withLockedValue { seen in
            if seen.count < s.expertTokens.count { seen += [Int](repeating: 0, count: s.expertTokens.count - seen.count) }
            return s.expertTokens.indices.map { e in
                defer { seen[e] = max(seen[e], s.expertTokens[e]) }
                return max(0, s.expertTokens[e] - seen[e])
            }
        }
        for (e, d) in expertDeltas.enumerated() where d > 0 {
            CoreMetrics.Counter(label: "swiftlet_expert_tokens_total", dimensions: [("expert", String(e))], factory: factory)
                .increment(by: d)
        }
        return registry.emitToBuffer()
    }
}
