import Foundation

/// What a running generation reports: each step as it comes, then the result.
public enum GenerationEvent: Sendable {
    case step(GenerationStep)
    case finished(GenerationResult)
}

/// What a generation service is doing, for metrics: sequences running and waiting, and totals since
/// the start. The KV and batching figures are those of the batching engine.
public struct ServiceStats: Sendable, Equatable {
    public var running: Int
    public var waiting: Int
    /// Sequences cancelled because their consumer went away (stopped early, or dropped while waiting).
    public var cancelled: Int
    /// Times a running sequence gave back its KV blocks to be computed again later.
    public var preemptions = 0
    public var kvBlocksTotal = 0
    public var kvBlocksUsed = 0
    /// Blocks in the prefix cache (held by sequences or not).
    public var kvBlocksCached = 0
    public var kvBlockSize = 0
    /// Blocks of the sliding-window layers, for models that have them (0 when they share the others').
    public var kvSlidingBlocksTotal = 0
    public var kvSlidingBlocksUsed = 0
    /// Full prompt blocks looked up in the prefix cache, and found.
    public var prefixLookups = 0
    public var prefixHits = 0
    /// Mixture of experts: tokens each expert has run, summed over layers (empty for dense models).
    public var expertTokens: [Int] = []
    /// Forward passes run, and the tokens they computed.
    public var steps = 0
    public var tokensComputed = 0

    public init(running: Int, waiting: Int, cancelled: Int = 0) {
        self.running = running
        self.waiting = waiting
        self.cancelled = cancelled
    }

    public var prefixHitRate: Double { prefixLookups == 0 ? 0 : Double(prefixHits) / Double(prefixLookups) }
}

/// An engine's load as others see it: a replica's heartbeat to the gateway, the console's deployments page.
public struct EngineLoad: Sendable, Equatable, Codable {
    public var running = 0
    public var waiting = 0
    public var kvBlocksTotal = 0
    public var kvBlocksUsed = 0
    /// Blocks in its prefix cache: the KV it can reuse for returning conversations.
    public var kvBlocksCached = 0
    public var prefixLookups = 0
    public var prefixHits = 0

    public init() {}

    public init(_ s: ServiceStats) {
        running = s.running
        waiting = s.waiting
        kvBlocksTotal = s.kvBlocksTotal
        kvBlocksUsed = s.kvBlocksUsed
        kvBlocksCached = s.kvBlocksCached
        prefixLookups = s.prefixLookups
        prefixHits = s.prefixHits
    }

    enum CodingKeys: String, CodingKey {
        case running, waiting
        case kvBlocksTotal = "kv_blocks_total", kvBlocksUsed = "kv_blocks_used", kvBlocksCached = "kv_blocks_cached"
        case prefixLookups = "prefix_lookups", prefixHits = "prefix_hits"
    }

    public var kvUsage: Double { kvBlocksTotal == 0 ? 0 : Double(kvBlocksUsed) / Double(kvBlocksTotal) }
}

public enum GenerationServiceError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The waiting queue holds `capacity` requests already; try again later.
    case queueFull(capacity: Int)
    case shuttingDown

    public var description: String {
        switch self {
        case .queueFull(let c): "the server is busy: \(c) requests are already waiting"
        case .shuttingDown: "the server is shutting down"
        }
    }
}

/// The asynchronous face of the engine that a server talks to. One stream per sequence.
///
/// `submit` checks the request at once (so bad parameters and context overflow are thrown before any
/// output) and throws `GenerationServiceError.queueFull` when no more work can wait. The stream yields
/// `.step` events and ends with one `.finished`, or throws the engine's error. Ending the consumer's
/// iteration (task cancelled, iterator dropped) cancels the sequence: a waiting one never starts, a
/// running one stops at its next token and frees its KV cache.
public protocol GenerationService: Sendable {
    func submit(_ request: GenerationRequest) throws -> AsyncThrowingStream<GenerationEvent, Error>
    var stats: ServiceStats { get }
    /// The most tokens (prompt + generated) one request may use.
    var maxSequenceTokens: Int { get }
}
