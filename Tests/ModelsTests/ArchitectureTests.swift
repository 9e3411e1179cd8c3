import Engine
import Foundation
import GGUF
import Models
import SwiftletTesting
import Testing

/// The architectures with no real model small enough for the tests: tiny random models with each
/// architecture's exact metadata and tensor names, quantized by gguf-py to a mix of Q4_0, Q4_1, Q5_0, Q5_1
/// and Q8_0 (scripts/fixtures/make_tiny_models.py; scripts/test makes them, the fixtures hold their SHA-256). Each is held to the closeness criteria of the real models
/// against its exact float64 reference, and to bitwise batch invariance.
@Suite struct ArchitectureTests {
    static let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("tiny")
    /// The generated models, beside the fixtures in the source tree (not committed, so not in the bundle).
    static let models = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/tiny")

    struct MissingModel: Error, CustomStringConvertible {
        var path: String
        var description: String {
            "\(path) is missing: run `python3 scripts/fixtures/make_tiny_models.py --models-only` (scripts/test does)"
        }
    }

    /// The path of a tiny model, which must exist.
    static func model(_ arch: String) throws -> String {
        let path = models.appendingPathComponent("tiny-\(arch).gguf").path
        guard FileManager.default.fileExists(atPath: path) else { throw MissingModel(path: path) }
        return path
    }
    static let architectures = ["llama", "qwen2", "qwen3", "phi3"]

    /// One engine per tiny model, loaded on first use.
    static func engine(_ arch: String) throws -> InferenceEngine {
        try cache.engine(try model(arch))
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
        let gguf = try GGUFFile(path: try Self.model(arch))
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
        // gguf-py's formats, mixed.
        #expect(Set(gguf.tensors.map(\.type)).isSuperset(of: [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .f32]))
    }

    /// Each architecture, and the
    /// mixtures of experts (4 experts, 2 used per token): Mixtral-style llama, Qwen 2 MoE (with its shared
    /// expert, weights not renormalised), Qwen 3 MoE (narrower experts, q/k norms) and OLMoE (weights not
    /// renormalised, q/k norms over the whole projections).
    static let mixtures = ["llama-moe", "qwen2moe", "qwen3moe", "olmoe"]

    @Test(arguments: architectures + mixtures)
    func atLeastAsCloseToExactAsLlamaCpp(_ arch: String) throws {
        let f = try QualityFixture.load(path: Self.fixtures.appendingPathComponent("quality-tiny-\(arch).json").path)
        // The generated model is the one the fixture was made from, to the byte.
        #expect(try ModelStore.sha256(of: try Self.model(arch)) == f.modelSHA256)
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
    @Test(arguments: architectures + mixtures)
    func batchInvariant(_ arch: String) throws {
        let subject = try BatchInvarianceCheck(engine: try Self.engine(arch), long: false)
        let storage = subject.model.makeStorage(blocks: 64, blockSize: 16)
        let blocks = BlockAllocator(storage)
        let reference = try subject.chunked(subject.target.count, storage, blocks.take(subject.target.count))
        for chunk in [1, 5, 16] {
            let got = try subject.chunked(chunk, storage, blocks.take(subject.target.count))
            #expect(subject.firstDifference(got, reference) == nil, "\(arch): chunks of \(chunk)")
        }
    }

    /// The tiny file rewritten in memory: `change` may edit its metadata and tensors.
    static func rewritten(_ arch: String, _ change: (inout [(String, GGUFValue)], inout [GGUFWriter.Tensor]) -> Void) throws -> GGUFFile {
        let f = try GGUFFile(path: try model(arch))
        var metadata = f.metadataKeys.map { ($0, f.metadata[$0]!) }
        var tensors = f.tensors.map { GGUFWriter.Tensor(name: $0.name, shape: $0.shape, type: $0.type, data: Array(f.tensorData($0))) }
        change(&metadata, &tensors)
        var w = GGUFWriter()
        for (k, v) in metadata { w.add(k, v) }
        for t in tensors { w.add(tensor: t) }
        return try GGUFFile(bytes: w.bytes())
    }

    /// A file whose tensors disagree with its metadata fails at load, naming the tensor; the unchanged
    /// rewrite loads (so the failures come from the changes).
    @Test func mismatchedTensorsAreNamed() throws {
        _ = try ModelRegistry.load(try Self.rewritten("qwen2") { _, _ in }, threads: 1)
        let missing = try Self.rewritten("qwen2") { _, t in t.removeAll { $0.name == "blk.1.ffn_down.weight" } }
        #expect(throws: GGUFError.missingTensor("blk.1.ffn_down.weight")) { try ModelRegistry.load(missing, threads: 1) }
        // blk.0.attn_k.weight as 256 x 256 (the Q rows' count) instead of 256 x 128.
        let shape = try Self.rewritten("qwen2") { _, t in
            let q = t.first { $0.name == "blk.0.attn_q.weight" }!
            let i = t.firstIndex { $0.name == "blk.0.attn_k.weight" }!
            t[i] = GGUFWriter.Tensor(name: t[i].name, shape: q.shape, type: q.type, data: q.data)
        }
        do {
            _ = try ModelRegistry.load(shape, threads: 1)
            Issue.record("a wrong shape was accepted")
        } catch {
            #expect("\(error)".contains("blk.0.attn_k.weight") && "\(error)".contains("[256, 128]"), "\(error)")
        }
        // A bias of the wrong length.
        let bias = try Self.rewritten("qwen2") { _, t in
            let i = t.firstIndex { $0.name == "blk.0.attn_v.bias" }!
            t[i] = GGUFWriter.Tensor(name: t[i].name, shape: [64], type: .f32, data: Array(t[i].data.prefix(256)))
        }
        do {
            _ = try ModelRegistry.load(bias, threads: 1)
            Issue.record("a short bias was accepted")
        } catch {
            #expect("\(error)".contains("blk.0.attn_v.bias"), "\(error)")
        }
    }

    /// Gemma 3's window metadata is checked: a pattern of 3 flags for 2 layers and a window of 0 are refused.
    @Test func badSlidingWindowMetadataIsRefused() throws {
        let cases: [(String, GGUFValue)] = [("gemma3.attention.sliding_window", .uint32(0)),
                                            ("gemma3.attention.sliding_window_pattern", .array(.bool, [.bool(true), .bool(false), .bool(true)]))]
        for (key, value) in cases {
            let f = try Self.rewritten("llama") { m, _ in
                m = m.map { ($0.0.hasPrefix("llama.") ? "gemma3." + String($0.0.dropFirst(6)) : $0.0, $0.1) }
                m = m.map { $0.0 == "general.architecture" ? ($0.0, .string("gemma3")) : $0 }
                m.append(("gemma3.attention.sliding_window", .uint32(512)))
                m.removeAll { $0.0 == key }
                m.append((key, value))
            }
            do {
                _ = try ModelRegistry.load(f, threads: 1)
                Issue.record("\(key) = \(value) was accepted")
            } catch {
                #expect("\(error)".contains(key), "\(error)")
            }
        }
    }

    /// Parameters as the console shows them: every tensor's elements, and for a mixture of experts the
    /// ones a token reads (each layer's three expert matrices count `used` of `count` times).
    @Test(arguments: architectures + mixtures)
    func factsCountTotalAndActiveParameters(_ name: String) throws {
        let gguf = try GGUFFile(path: try Self.model(name))
        let c = try ModelConfig(gguf: gguf)
        let facts = ModelFacts(gguf: gguf, config: c)
        #expect(facts.parameters == gguf.tensors.reduce(0) { $0 + $1.shape.reduce(1, *) })
        #expect(facts.architecture == (try gguf.string("general.architecture")) && facts.fileBytes == gguf.fileSize)
        #expect(Set(gguf.tensors.map { "\($0.type)" }).contains(facts.weightType))
        let idle = c.layerCount * 3 * c.embeddingLength * c.expertFeedForwardLength * (c.expertCount - c.expertUsedCount)
        #expect(facts.parameters - facts.activeParameters == (c.expertCount > 0 ? idle : 0))
        #expect(facts.experts == c.expertCount && facts.expertsUsed == c.expertUsedCount)
    }

    /// The mixture of experts reads its routing from the file, and a sequence's logits do not depend on
    /// what else is routed to the same experts in its step: alone, and beside 7 others at each place.
    @Test(arguments: mixtures)
    func expertsAreRoutedPerTokenWhateverElseIsInTheStep(_ name: String) throws {
        let gguf = try GGUFFile(path: try Self.model(name))
        let config = try ModelConfig(gguf: gguf)
        #expect(config.expertCount == 4 && config.expertUsedCount == 2)
        #expect(config.expertFeedForwardLength == (["llama-moe", "olmoe"].contains(name) ? 512 : 256))
        #expect(config.sharedExpertFeedForwardLength == (name == "qwen2moe" ? 512 : 0))
        let subject = try BatchInvarianceCheck(engine: try Self.engine(name), long: false)
        let storage = subject.model.makeStorage(blocks: 256, blockSize: 16)
        let blocks = BlockAllocator(storage)
        let target = subject.target, vocab = subject.vocab
        let alone = try subject.chunked(target.count, storage, blocks.take(target.count))
        var rng = SystemRandomNumberGenerator()
        for at in [0, 3, 7] {
            var parts: [(tokens: [Int], start: Int, table: [Int32], logits: Int)] = (0..<7).map { _ in
                let len = Int.random(in: 1...20, using: &rng)
                return ((0..<len).map { _ in Int.random(in: 0..<vocab, using: &rng) }, 0, blocks.take(len), 1)
            }
            parts.insert((target, 0, blocks.take(target.count), target.count), at: at)
            let got = try subject.run(parts, storage)[at]
            #expect(subject.firstDifference(got, alone) == nil, "target at \(at)")
        }
    }
}
