import Console
import CoreMetrics
import Foundation
import NIOConcurrencyHelpers
import Prometheus

/// The gateway's Prometheus metrics, in a registry of its own.
public final class GatewayMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    /// Raw recent events for the console's live charts.
    public let live = LiveMetrics()
    private let factory: PrometheusMetricsFactory

    public init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        let seconds = [0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60].map { Duration.seconds($0) }
        factory.durationHistogramBuckets = [
            "swiftlet_gateway_cold_start_seconds": seconds,
            "swiftlet_gateway_time_to_first_token_seconds": seconds,
            "swiftlet_gateway_request_duration_seconds": seconds,
        ]
        self.factory = factory
    }

    func counter(_ label: String, _ dimensions: [(String, String)] = []) -> CoreMetrics.Counter {
        CoreMetrics.Counter(label: label, dimensions: dimensions, factory: factory)
    }

    func gauge(_ label: String, _ dimensions: [(String, String)] = []) -> CoreMetrics.Gauge {
        CoreMetrics.Gauge(label: label, dimensions: dimensions, factory: factory)
    }

    func timer(_ label: String, _ dimensions: [(String, String)] = []) -> CoreMetrics.Timer {
        CoreMetrics.Timer(label: label, dimensions: dimensions, factory: factory)
    }

    func request(deployment: String, status: Int) {
        counter("swiftlet_gateway_requests_total", [("deployment", deployment), ("status", String(status))]).increment()
    }

    func retry(deployment: String) { counter("swiftlet_gateway_retries_total", [("deployment", deployment)]).increment() }

    func streamBroken(deployment: String) {
        counter("swiftlet_gateway_broken_streams_total", [("deployment", deployment)]).increment()
    }

    func limited(_ kind: String) { counter("swiftlet_gateway_rate_limited_total", [("limit", kind)]).increment() }

    func tokens(deployment: String, prompt: Int, completion: Int) {
        counter("swiftlet_gateway_prompt_tokens_total", [("deployment", deployment)]).increment(by: prompt)
        counter("swiftlet_gateway_completion_tokens_total", [("deployment", deployment)]).increment(by: completion)
    }

    func coldStart(deployment: String, seconds: Double) {
        timer("swiftlet_gateway_cold_start_seconds", [("deployment", deployment)]).recordNanoseconds(Int64(seconds * 1e9))
    }

    func timeToFirstToken(deployment: String, seconds: Double) {
        timer("swiftlet_gateway_time_to_first_token_seconds", [("deployment", deployment)])
            .recordNanoseconds(Int64(seconds * 1e9))
    }

    func duration(deployment: String, seconds: Double) {
        timer("swiftlet_gateway_request_duration_seconds", [("deployment", deployment)])
            .recordNanoseconds(Int64(seconds * 1e9))
    }
}
