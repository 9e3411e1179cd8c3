import ArgumentParser
import Engine
import Foundation
import Grammar
import Kernels
import Templates

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure prefill and decode speed (median over repeats).")

    @OptionGroup var modelOptions: ModelOptions

    @Option(name: .long, help: "Prompt length in tokens.")
    var promptTokens: Int = 128

    @Option(name: .long, help: "Tokens to generate.")
    var genTokens: Int = 128

    @Option(name: .long, help: "Repetitions; the median is reported.")
    var `repeat`: Int = 3

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    @Flag(name: .long, help: "Measure streaming-read memory bandwidth instead (1 GiB buffer, best of 5).")
    var memory = false

    @Option(name: .long, help: "Run this many sequences at once through the batching engine and report aggregate decode tokens/s.")
    var batch: Int = 1

    @Option(name: .long, help: "A JSON Schema file: decode a chat reply under it and unconstrained, alternately, and report both decode speeds and the mask timings.")
    var jsonSchema: String?

    @Flag(name: .long, help: "Measure the sampler at common settings on real logits, as a share of a decode step.")
    var sampling = false

    @Flag(name: .long, help: "Measure closeness to exact arithmetic instead of speed: Swiftlet and llama.cpp against the fixture's exact reference (mean |ΔNLL|, top-1 agreement, approximate KL, perplexity).")
    var quality = false

    @Option(name: .long, help: "The quality fixture (made by scripts/reference/make_quality_fixture.py).")
    var fixture: String = QualityBench.defaultFixture

    @Option(name: .long, help: "Use at most this kernel instruction set: \(CPUFeatures.ISA.allCases.map(\.name).joined(separator: ", ")).")
    var isa: String?

    struct Report: Codable {
        var model: String
        var threads: Int
        var cores: Int
        var simd: String
        var prompt_tokens: Int
        var gen_tokens: Int
        var repeats: Int
        var prefill_tokens_per_second: Double
        var decode_tokens_per_second: Double
        var time_to_first_token_ms: Double
        var peak_rss_mb: Double
    }

    func validate() throws {
        guard promptTokens >= 1, genTokens >= 1, `repeat` >= 1, batch >= 1 else {
            throw ValidationError("--prompt-tokens, --gen-tokens, --repeat and --batch must be >= 1")
        }
        if let isa, !CPUFeatures.ISA.allCases.contains(where: { $0.name == isa }) {
            throw ValidationError("--isa must be one of \(CPUFeatures.ISA.allCases.map(\.name).joined(separator: ", "))")
        }
    }

    func run() throws {
        if let isa, let level = CPUFeatures.ISA.allCases.first(where: { $0.name == isa }) { CPUFeatures.limit(to: level) }
        if memory {
            let threads = modelOptions.threads ?? ThreadPoolDefaults.threads
            let gbs = ThreadPool(threads: threads).streamReadBandwidth()
            writeOut(json ? "{\"threads\": \(threads), \"stream_read_gb_s\": \(gbs)}\n"
                          : String(format: "streaming read: %.1f GB/s with %d threads\n", gbs, threads))
            return
        }
        if quality {
            try reportingErrors {
                try QualityBench(fixturePath: fixture, json: json).run(modelOptions)
            }
            return
        }
        try reportingErrors {
            let engine = try modelOptions.load()
            guard promptTokens + genTokens <= engine.contextLength else {
                throw EngineError.contextLengthExceeded(
                    promptTokens: promptTokens, maxTokens: genTokens, contextLength: engine.contextLength)
            }
            // A deterministic prompt of ordinary text tokens.
            let text = String(repeating: "The quick brown fox jumps over the lazy dog while the river flows to the sea. ", count: 1 + promptTokens / 8)
            let prompt = Array(engine.encode(text).prefix(promptTokens))
            if batch > 1 {
                try benchBatch(engine, prompt: prompt)
                return
            }
            if let jsonSchema {
                try benchSchema(engine, path: jsonSchema)
                return
            }
            if sampling {
                try benchSampling(engine, prompt: prompt)
                return
            }
            var prefill: [Double] = [], decode: [Double] = [], ttft: [Double] = []
            let model = engine.model
            var logits: [Float] = []
            for _ in 0..<`repeat` {
                let cache = model.makeCache(capacity: promptTokens + genTokens)
                let t0 = DispatchTime.now().uptimeNanoseconds
                try model.forward(tokens: prompt, cache: cache, logits: .last, into: &logits)
                let t1 = DispatchTime.now().uptimeNanoseconds
                var token = logits.withUnsafeBufferPointer { Sampler.argmax(UnsafeBufferPointer(rebasing: $0[0..<model.config.vocabularySize])) }
                let t2 = DispatchTime.now().uptimeNanoseconds
                for _ in 0..<genTokens {
                    try model.forward(tokens: [token], cache: cache, logits: .last, into: &logits)
                    token = logits.withUnsafeBufferPointer { Sampler.argmax(UnsafeBufferPointer(rebasing: $0[0..<model.config.vocabularySize])) }
                }
                let t3 = DispatchTime.now().uptimeNanoseconds
                prefill.append(Double(prompt.count) / (Double(t1 - t0) / 1e9))
                ttft.append(Double(t2 - t0) / 1e6)
                decode.append(Double(genTokens) / (Double(t3 - t2) / 1e9))
            }
            func median(_ a: [Double]) -> Double {
                let s = a.sorted()
                return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
            }
            var usage = rusage()
            getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
            let report = Report(
                model: engine.modelName, threads: modelOptions.threads ?? ThreadPoolDefaults.threads,
                cores: ProcessInfo.processInfo.activeProcessorCount, simd: CPUFeatures.description,
                prompt_tokens: prompt.count, gen_tokens: genTokens, repeats: `repeat`,
                prefill_tokens_per_second: median(prefill), decode_tokens_per_second: median(decode),
                time_to_first_token_ms: median(ttft), peak_rss_mb: Double(usage.ru_maxrss) / 1024)
            if json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                writeOut(String(decoding: try enc.encode(report), as: UTF8.self) + "\n")
            } else {
                writeOut(String(
                    format: "%@: prefill %.1f tok/s, decode %.1f tok/s, TTFT %.1f ms, peak RSS %.1f MB (%d threads, %@)\n",
                    report.model, report.prefill_tokens_per_second, report.decode_tokens_per_second,
                    report.time_to_first_token_ms, report.peak_rss_mb, report.threads, report.simd))
            }
        }
    }

    /// `batch` sequences submitted together to the batching engine (prefix cache off, so each computes
    /// its prompt): prefill of all, then aggregate decode tokens/s while all of them generate.
    private func benchBatch(_ engine: InferenceEngine, prompt: [Int]) throws {
        var options = BatchEngine.Options()
        options.prefixCaching = false
        options.maxSequences = batch
        options.kvCacheBytes = batch * (prompt.count + genTokens + 32) * 2 * 2 * engine.model.config.layerCount
            * engine.model.config.kvDim
        let service = try BatchEngine(engine: engine, options: options)
        defer { service.shutdown() }
        final class Times: @unchecked Sendable {
            private let lock = NSLock()
            private(set) var firstTokens: [UInt64] = [], ends: [UInt64] = []
            func record(first: UInt64, end: UInt64) {
                lock.withLock {
                    firstTokens.append(first)
                    ends.append(end)
                }
            }
        }
        var results: [(prefill: Double, decode: Double)] = []
        for _ in 0..<`repeat` {
            let times = Times()
            let done = DispatchGroup()
            let start = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<batch {
                let stream = try service.submit(GenerationRequest(promptTokens: prompt, maxTokens: genTokens, ignoreEOS: true))
                done.enter()
                Task {
                    var first: UInt64?
                    for try await event in stream {
                        if case .step = event, first == nil { first = DispatchTime.now().uptimeNanoseconds }
                    }
                    let end = DispatchTime.now().uptimeNanoseconds
                    times.record(first: first ?? end, end: end)
                    done.leave()
                }
            }
            done.wait()
            let lastFirst = times.firstTokens.max()!, lastEnd = times.ends.max()!
            results.append((Double(batch * prompt.count) / (Double(lastFirst - start) / 1e9),
                            Double(batch * (genTokens - 1)) / (Double(lastEnd - lastFirst) / 1e9)))
        }
        let prefill = results.map(\.prefill).sorted()[results.count / 2]
        let decode = results.map(\.decode).sorted()[results.count / 2]
        writeOut(String(format: "%@: %d sequences at once: prefill %.1f tok/s, aggregate decode %.1f tok/s (%d threads, %@)\n",
                        engine.modelName, batch, prefill, decode, modelOptions.threads ?? ThreadPoolDefaults.threads,
                        CPUFeatures.description))
    }

    struct SchemaReport: Codable {
        var model: String
        var schema: String
        var threads: Int
        var rounds: Int
        var tokens_per_round: Int
        var constrained_decode_tokens_per_second: Double
        var unconstrained_decode_tokens_per_second: Double
        var ratio: Double
        var vocabulary_build_ms: Double
        var uncached_mask_us_median: Double
        var uncached_mask_us_max: Double
        var cached_mask_us_median: Double
        var apply_mask_us_median: Double
        var output_valid: Bool
    }

    /// Greedy chat replies under the schema and, with as many tokens, unconstrained (EOS ignored),
    /// alternately for `repeat` rounds after a warm-up; then the masks of that reply's states timed
    /// cold (fresh matcher) and cached.
    private func benchSchema(_ engine: InferenceEngine, path: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let schema = try JSONValue.parse(Array(data))
        let constraint = try OutputConstraint.jsonSchema(schema)
        let prompt = try engine.chatTokens([
            ChatMessage(role: "system", content: "Reply with JSON that follows this JSON Schema:\n" + schema.spacedJSON()),
            ChatMessage(role: "user", content: "Write an example."),
        ])
        let limit = min(genTokens, engine.contextLength - prompt.count)
        let warm = try engine.generate(GenerationRequest(promptTokens: prompt, maxTokens: limit, constraint: constraint))
        var constrained: [Double] = [], unconstrained: [Double] = []
        var tokens = warm.tokens.count
        for _ in 0..<`repeat` {
            let c = try engine.generate(GenerationRequest(promptTokens: prompt, maxTokens: limit, constraint: constraint))
            tokens = c.tokens.count
            let u = try engine.generate(GenerationRequest(promptTokens: prompt, maxTokens: tokens, ignoreEOS: true))
            constrained.append(c.decodeTokensPerSecond)
            unconstrained.append(u.decodeTokensPerSecond)
        }
        func median(_ a: [Double]) -> Double {
            let s = a.sorted()
            return s.isEmpty ? 0 : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        }
        func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
        // Masks along the reply: a fresh matcher (cold: every mask computed), then the same states again.
        let t0 = now()
        let vocabulary = TokenVocabulary(tokenizer: engine.tokenizer)
        let vocabularyMs = Double(now() - t0) / 1e6
        let matcher = GrammarMatcher(grammar: constraint.grammar, vocabulary: vocabulary)
        var states: [GrammarState] = [GrammarState(matcher: matcher)]
        for t in warm.tokens {
            var next = states.last!
            guard next.advance(token: t) else { break }
            states.append(next)
        }
        var cold: [Double] = [], cached: [Double] = [], apply: [Double] = []
        var logits = [Float](repeating: 0, count: engine.model.config.vocabularySize)
        for s in states where !s.isComplete {
            let a = now()
            _ = s.mask()
            cold.append(Double(now() - a) / 1e3)
        }
        for s in states where !s.isComplete {
            let a = now()
            let m = s.mask()
            let b = now()
            logits.withUnsafeMutableBufferPointer { m.apply(to: $0) }
            cached.append(Double(b - a) / 1e3)
            apply.append(Double(now() - b) / 1e3)
        }
        let valid = constraint.grammar.accepts(warm.text)
        let report = SchemaReport(
            model: engine.modelName, schema: path, threads: modelOptions.threads ?? ThreadPoolDefaults.threads,
            rounds: `repeat`, tokens_per_round: tokens,
            constrained_decode_tokens_per_second: median(constrained),
            unconstrained_decode_tokens_per_second: median(unconstrained),
            ratio: median(unconstrained) > 0 ? median(constrained) / median(unconstrained) : 0,
            vocabulary_build_ms: vocabularyMs, uncached_mask_us_median: median(cold), uncached_mask_us_max: cold.max() ?? 0,
            cached_mask_us_median: median(cached), apply_mask_us_median: median(apply), output_valid: valid)
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            writeOut(String(decoding: try enc.encode(report), as: UTF8.self) + "\n")
        } else {
            writeOut(String(
                format: "%@: decode with schema %.1f tok/s, without %.1f tok/s (%.1f%%), %d tokens, %d rounds\n"
                    + "masks: uncached median %.0f us (max %.0f us), cached lookup %.2f us, apply %.1f us; vocabulary trie %.0f ms\n",
                report.model, report.constrained_decode_tokens_per_second, report.unconstrained_decode_tokens_per_second,
                report.ratio * 100, tokens, `repeat`, report.uncached_mask_us_median, report.uncached_mask_us_max,
                report.cached_mask_us_median, report.apply_mask_us_median, vocabularyMs))
            if !valid { writeOut("warning: the reply did not complete within --gen-tokens (\(limit))\n") }
        }
    }
}
