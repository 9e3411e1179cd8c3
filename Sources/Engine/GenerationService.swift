import Foundation

/// What a running generation reports: each step as it comes, then the result.
public enum GenerationEvent: Sendable {
    case step(GenerationStep)
    case finished(GenerationResult)
}

/// Sequences being generated and waiting to start, and how many were cancelled since the start
/// (stopped early or dropped from the queue because their consumer went away).
public struct ServiceStats: Sendable, Equatable {
    public var running: Int
    public var waiting: Int
    public var cancelled: Int

    public init(running: Int, waiting: Int, cancelled: Int = 0) {
        self.running = running
        self.waiting = waiting
        self.cancelled = cancelled
    }
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
}

/// First in, first out: one dedicated thread runs one sequence at a time on the engine; the rest wait
/// in a bounded queue. Generation is blocking CPU work, so it stays off Swift concurrency's threads.
///
/// The worker thread keeps the service alive until `shutdown()`.
public final class SerialGenerationService: GenerationService, @unchecked Sendable {
    // @unchecked: all mutable state below is guarded by `condition`.
    private struct Job {
        var id: UInt64
        var request: GenerationRequest
        var continuation: AsyncThrowingStream<GenerationEvent, Error>.Continuation
    }

    public let engine: InferenceEngine
    /// Most requests that may wait while one runs.
    public let maxWaiting: Int

    private let condition = NSCondition()
    private var waiting: [Job] = []
    private var runningID: UInt64?
    private var runningCancelled = false
    private var cancelledCount = 0
    private var lastID: UInt64 = 0
    private var stopping = false
    private var stopped = false

    public init(engine: InferenceEngine, maxWaiting: Int = 64) {
        self.engine = engine
        self.maxWaiting = max(0, maxWaiting)
        let thread = Thread { [self] in self.work() }
        thread.name = "swiftlet-generation"
        thread.stackSize = 8 << 20
        thread.start()
    }

    public var stats: ServiceStats {
        condition.lock()
        defer { condition.unlock() }
        return ServiceStats(running: runningID == nil ? 0 : 1, waiting: waiting.count, cancelled: cancelledCount)
    }

    public func submit(_ request: GenerationRequest) throws -> AsyncThrowingStream<GenerationEvent, Error> {
        try engine.validate(request)
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: GenerationEvent.self)
        condition.lock()
        lastID += 1
        let id = lastID
        condition.unlock()
        // Runs when the consumer goes away as well as when the worker finishes the stream.
        continuation.onTermination = { [weak self] _ in self?.cancel(id) }

        condition.lock()
        if stopping {
            condition.unlock()
            throw GenerationServiceError.shuttingDown
        }
        guard waiting.count < maxWaiting || (runningID == nil && waiting.isEmpty) else {
            condition.unlock()
            throw GenerationServiceError.queueFull(capacity: maxWaiting)
        }
        waiting.append(Job(id: id, request: request, continuation: continuation))
        condition.signal()
        condition.unlock()
        return stream
    }

    /// Stops taking requests and ends the worker after the sequence it is running. Requests still
    /// waiting fail with `shuttingDown`. Call after the server has drained its in-flight requests.
    public func shutdown() {
        condition.lock()
        stopping = true
        let dropped = waiting
        waiting.removeAll()
        condition.broadcast()
        condition.unlock()
        for job in dropped { job.continuation.finish(throwing: GenerationServiceError.shuttingDown) }
    }

    /// Waits until the worker thread has exited (after `shutdown()`).
    public func waitUntilStopped() {
        condition.lock()
        while !stopped { condition.wait() }
        condition.unlock()
    }

    private func cancel(_ id: UInt64) {
        condition.lock()
        if let i = waiting.firstIndex(where: { $0.id == id }) {
            waiting.remove(at: i)
            cancelledCount += 1
        } else if runningID == id {
            runningCancelled = true
        }
        condition.unlock()
    }

    private func isCancelled(_ id: UInt64) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return runningID == id && runningCancelled
    }

    private func work() {
        while true {
            condition.lock()
            while waiting.isEmpty && !stopping { condition.wait() }
            if waiting.isEmpty {
                stopped = true
                condition.broadcast()
                condition.unlock()
                return
            }
            let job = waiting.removeFirst()
            runningID = job.id
            runningCancelled = false
            condition.unlock()

            let finish = run(job)

            condition.lock()
            if finish == .cancelled { cancelledCount += 1 }
            runningID = nil
            runningCancelled = false
            condition.unlock()
        }
    }

    private func run(_ job: Job) -> FinishReason? {
        let continuation = job.continuation
        do {
            let result = try engine.generate(job.request) { step in
                if isCancelled(job.id) { return false }
                if case .terminated = continuation.yield(.step(step)) { return false }
                return true
            }
            continuation.yield(.finished(result))
            continuation.finish()
            return result.finishReason
        } catch {
            continuation.finish(throwing: error)
            return nil
        }
    }
}
