import Engine
import Foundation
import GGUF
import Models
import SwiftletTesting
import Testing

/// The architectures with no real model small enough for the tests: tiny random models with each
/// architecture's exact metadata and tensor names, quantized to Q4_K_M by llama.cpp
/// (scripts/fixtures/make_tiny_models.py). Each is held to the closeness criteria of the real models
/// against its exact float64 reference, and to bitwise batch invariance.
@Suite struct ArchitectureTests {
    static let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("tiny")
    static let architectures = ["llama", "qwen2", "qwen3", "phi3"]

    /// One engine per tiny model, loaded on first use.
    static func engine(_ arch: String) throws -> InferenceEngine {
        try cache.engine(fixtures.appendingPathComponent("tiny-\(arch).gguf").path)
    }

    static let cache = EngineCache()

    final class EngineCache: @unchecked Sendable {
        private var engines: [String: InferenceEngine] = [:]
        private let lock = NSLock()
        func engine(_ path: String) throws -> InferenceEngine {
            lock.lock()
            defer { lock.unlock() }
            if let e = engines[path] { return e }
            let e = try InferenceEngine(path: path, threads: 2, contextLength: 1024)
            engines[path] = e
            return e
        }
    }

    /// Each file exercises what is particular to its architecture.
    @Test(arguments: architectures)
    func specReadsWhatTheArchitectureHas(_ arch: String) throws {
        let gguf = try GGUFFile(path: Self.fixtures.appendingPathComponent("tiny-\(arch).gguf").path)
        let model = try #require(try ModelRegistry.load(gguf, threads: 1) as? DecoderModel)
        let s = model.spec
        #expect(s.config.architecture == arch)
        #expect(s.layerRoPE.allSatisfy { $0.neox == (arch != "llama") })
        #expect(s.fusedQKV == (arch == "phi3") && s.fusedGateUp == (arch == "phi3"))
        #expect(s.layerWindow.allSatisfy { $0 == 0 })
        #expect(s.activation == .silu && s.embeddingScale == nil)
        // Llama 3's RoPE scaling, Qwen 2's biases and Qwen 3's q/k norms are in the files.
        #expect((gguf.tensorInfo("rope_freqs.weight") != nil) == (arch == "llama"))
        #expect((gguf.tensorInfo("blk.0.attn_q.bias") != nil) == (arch == "qwen2"))
        #expect((gguf.tensorInfo("blk.0.attn_q_norm.weight") != nil) == (arch == "qwen3"))
        // Q4_K_M: K-quants in the file.
        #expect(gguf.tensors.contains { $0.type == .q4_K } && gguf.tensors.contains { $0.type == .q6_K })
    }

    /// Each architecture as Q4_K_M, and the llama model as Q2_K (its tensors Q2_K, Q3_K and Q6_K).
    @Test(arguments: architectures + ["llama-q2_k"])
    func atLeastAsCloseToExactAsLlamaCpp(_ arch: String) throws {
        let f = try QualityFixture.load(path: Self.fixtures.appendingPathComponent("quality-tiny-\(arch).json").path)
        let engine = try Self.engine(arch)
        for p in f.passages { #expect(engine.encode(try #require(p.text)) == p.tokenIDs, "\(arch) \(p.name)") }
        let s = try engine.quality(f), l = f.llamacppMetrics
        let report = Comment(rawValue: String(
            format: "%@: Swiftlet mean |ΔNLL| %.5f, top-1 %.2f%%, KL %.6f; llama.cpp %.5f, %.2f%%, %.6f", arch,
            s.meanAbsDeltaNLL, s.top1Agreement * 100, s.approximateKL, l.meanAbsDeltaNLL, l.top1Agreement * 100,
            l.approximateKL))
        #expect(s.tokens == f.positions)
        #expect(s.meanAbsDeltaNLL <= l.meanAbsDeltaNLL / 2 + 1e-6, report)
        #expect(s.top1Agreement >= l.top1Agreement, report)
        #expect(s.approximateKL <= l.approximateKL, report)
    }

    /// Prompt chunks of any size and decode rows beside other sequences give the same bits as the
    /// whole prompt (the shared batch-invariance check, on each architecture's own parts).
    @Test(arguments: architectures)
    func batchInvariant(_ arch: String) throws {
        let subject = try BatchInvarianceTests.Subject(engine: try Self.engine(arch), long: false)
        let storage = subject.model.makeStorage(blocks: 64, blockSize: 16)
        let blocks = BatchInvarianceTests.Blocks(storage)
        let reference = try subject.chunked(subject.target.count, storage, blocks.take(subject.target.count))
        for chunk in [1, 5, 16] {
            let got = try subject.chunked(chunk, storage, blocks.take(subject.target.count))
            #expect(subject.firstDifference(got, reference) == nil, "\(arch): chunks of \(chunk)")
        }
    }
}
