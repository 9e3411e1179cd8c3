import Foundation
import HTTPTypes
import Hummingbird
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle

/// What the server reads from its engine or replicas at each sample.
public struct FeedGauges: Sendable, Equatable {
    /// Requests waiting to start (in engine queues, and at the gateway for a replica).
    public var queueDepth: Int
    /// Sequences generating now.
    public var running: Int
    /// Share of KV cache blocks in use, 0...1 (nil when unknown).
    public var kvUsage: Double?

    public init(queueDepth: Int = 0, running: Int = 0, kvUsage: Double? = nil) {
        self.queueDepth = queueDepth
        self.running = running
        self.kvUsage = kvUsage
    }
}

/// One point of the console's charts: rates over the last interval, latency percentiles over the
/// last minute, and gauges now.
public struct MetricsSnapshot: Sendable, Equatable, Codable {
    /// Unix time of the sample, in seconds.
    public var time: Double
    public var interval: Double
    public var outputTokensPerSecond: Double
    public var promptTokensPerSecond: Double
    public var requestsPerSecond: Double
    /// Errors in the interval.
    public var errors: Int
    public var ttft: Percentiles?
    public var tpot: Percentiles?
    public var queueDepth: Int
    public var running: Int
    public var kvUsage: Double?
    /// Since the server started.
    public var totalRequests: Int
    public var totalErrors: Int
    public var totalCompletionTokens: Int

    enum CodingKeys: String, CodingKey {
        case time, interval, errors, ttft, tpot, running
        case outputTokensPerSecond = "output_tokens_per_second", promptTokensPerSecond = "prompt_tokens_per_second"
        case requestsPerSecond = "requests_per_second", queueDepth = "queue_depth", kvUsage = "kv_usage"
        case totalRequests = "total_requests", totalErrors = "total_errors"
        case totalCompletionTokens = "total_completion_tokens"
    }
}

/// Samples the metrics every `interval` seconds, keeps the last `historySize` samples, and pushes each
/// new one to the console's open feeds (server-sent events): one connection per open page, one small
/// JSON object per interval, whatever the traffic.
public final class MetricsFeed: Service, Sendable {
    public enum FeedError: Error, Equatable {
        case tooManySubscribers(Int)
        case closed
    }

    struct State {
        var history: [MetricsSnapshot] = []
        var lastTime: Double
        var lastTotals = LiveMetrics.Totals()
        var subscribers: [Int: AsyncStream<MetricsSnapshot>.Continuation] = [:]
        var nextID = 0
        var closed = false
    }

    public let live: LiveMetrics
    public let interval: Double
    public let historySize: Int
    public let maxSubscribers: Int
    private let gauges: @Sendable () -> FeedGauges
    private let state: NIOLockedValueBox<State>

    public init(live: LiveMetrics, interval: Double = 1, historySize: Int = 300, maxSubscribers: Int = 64,
                now: Double = LiveMetrics.now(), gauges: @escaping @Sendable () -> FeedGauges) {
        self.live = live
        self.interval = interval
        self.historySize = historySize
        self.maxSubscribers = maxSubscribers
        self.gauges = gauges
        state = NIOLockedValueBox(State(lastTime: now, lastTotals: live.totals))
    }

    public var history: [MetricsSnapshot] { state.withLockedValue { $0.history } }
    public var subscriberCount: Int { state.withLockedValue { $0.subscribers.count } }

    /// Takes a sample now, keeps it and sends it to every open feed.
    @discardableResult
    public func sample(now: Double = LiveMetrics.now(), date: Date = Date()) -> MetricsSnapshot {
        let totals = live.totals
        let latencies = live.latencies(now: now)
        let g = gauges()
        return state.withLockedValue { s in
            let dt = max(1e-3, now - s.lastTime)
            let d = s.lastTotals
            let snapshot = MetricsSnapshot(
                time: (date.timeIntervalSince1970 * 1000).rounded() / 1000, interval: (dt * 1000).rounded() / 1000,
                outputTokensPerSecond: Double(totals.completionTokens - d.completionTokens) / dt,
                promptTokensPerSecond: Double(totals.promptTokens - d.promptTokens) / dt,
                requestsPerSecond: Double(totals.requests - d.requests) / dt,
                errors: totals.errors - d.errors, ttft: latencies.ttft, tpot: latencies.tpot,
                queueDepth: g.queueDepth, running: g.running, kvUsage: g.kvUsage,
                totalRequests: totals.requests, totalErrors: totals.errors,
                totalCompletionTokens: totals.completionTokens)
            s.lastTime = now
            s.lastTotals = totals
            s.history.append(snapshot)
            if s.history.count > historySize { s.history.removeFirst(s.history.count - historySize) }
            for c in s.subscribers.values { c.yield(snapshot) }
            return snapshot
        }
    }

    /// The history so far and the samples to come; ends when the feed closes.
    public func subscribe() throws -> (history: [MetricsSnapshot], updates: AsyncStream<MetricsSnapshot>) {
        let (stream, continuation) = AsyncStream.makeStream(of: MetricsSnapshot.self, bufferingPolicy: .bufferingNewest(32))
        let (id, history) = try state.withLockedValue { s -> (Int, [MetricsSnapshot]) in
            if s.closed { throw FeedError.closed }
            guard s.subscribers.count < maxSubscribers else { throw FeedError.tooManySubscribers(maxSubscribers) }
            let id = s.nextID
            s.nextID += 1
            s.subscribers[id] = continuation
            return (id, s.history)
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLockedValue { $0.subscribers.removeValue(forKey: id) }
        }
        return (history, stream)
    }

    /// Ends every feed; later subscriptions fail.
    public func close() {
        let open = state.withLockedValue { s in
            s.closed = true
            defer { s.subscribers = [:] }
            return Array(s.subscribers.values)
        }
        for c in open { c.finish() }
    }

    /// Samples until graceful shutdown, then ends the feeds, so that open pages do not hold the server's
    /// drain (run it in a group that shuts it down before the HTTP server).
    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            sample()
            try? await Task.sleep(for: .milliseconds(Int(interval * 1000)))
        }
        close()
    }

    // MARK: HTTP

    static func encode(_ value: some Encodable) -> ByteBuffer {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return ByteBuffer(bytes: (try? encoder.encode(value)) ?? Data("null".utf8))
    }

    /// An SSE event: `event: NAME` (when given) and one `data:` line of JSON.
    public static func event(_ name: String?, _ value: some Encodable) -> ByteBuffer {
        var buffer = ByteBuffer(string: name.map { "event: \($0)\n" } ?? "")
        buffer.writeString("data: ")
        var json = encode(value)
        buffer.writeBuffer(&json)
        buffer.writeString("\n\n")
        return buffer
    }

    /// GET .../metrics as JSON: the samples kept.
    public func historyBody() -> ByteBuffer {
        Self.encode(HistoryBody(interval: interval, data: history))
    }

    struct HistoryBody: Encodable {
        var object = "metrics.history"
        var interval: Double
        var data: [MetricsSnapshot]
    }

    /// GET .../metrics/stream: `event: history` with the samples kept, then one event per sample until
    /// the client leaves or the server shuts down. Throws while shutting down or with too many open feeds.
    public func streamResponse() throws -> Response {
        let (history, updates) = try subscribe()
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-store",
                      HTTPField.Name("X-Accel-Buffering")!: "no"],
            body: ResponseBody { writer in
                try await writer.write(ByteBuffer(string: "retry: 2000\n\n"))
                try await writer.write(Self.event("history", history))
                for await snapshot in updates {
                    try await writer.write(Self.event(nil, snapshot))
                }
                try await writer.finish(nil)
            })
    }
}
