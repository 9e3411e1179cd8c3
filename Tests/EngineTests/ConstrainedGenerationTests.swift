import Engine
import Foundation
import Grammar
import Models
import Templates
import Testing

/// Generation under an output grammar: complete, valid output that ends by itself; the same tokens
/// alone, batched with unconstrained requests, or preempted and recomputed.
@Suite(.serialized) struct ConstrainedGenerationTests {
    static let schema = #"""
        {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
         "age": {"type": "integer", "minimum": 0, "maximum": 99}, "pets": {"type": "array", "items": {"enum": ["cat", "dog"]}, "maxItems": 2}},
         "required": ["name", "age", "pets"], "additionalProperties": false}
        """#

    func request(_ e: InferenceEngine, _ prompt: String, seed: UInt64, temperature: Float) throws -> GenerationRequest {
        GenerationRequest(
            promptTokens: try e.chatTokens([ChatMessage(role: "user", content: prompt)]), maxTokens: 80,
            sampling: SamplingParameters(temperature: temperature, seed: seed),
            constraint: try .jsonSchema(JSONValue.parse(Self.schema)))
    }

    @Test func outputIsValidAndEndsByItself() throws {
        guard let e = try engineOrSkip() else { return }
        for (i, temperature) in [Float(0), 0.7, 1.0].enumerated() {
            let r = try e.generate(try request(e, "Describe someone.", seed: UInt64(i), temperature: temperature))
            #expect(r.finishReason == .stop, "\(r.text)")
            let g = try Grammar.jsonSchema(JSONValue.parse(Self.schema))
            #expect(g.accepts(r.text), "\(r.text)")
            #expect(try JSONValue.parse(r.text)["pets"] != nil)
        }
    }

    @Test func batchedAndPreemptedEqualAlone() async throws {
        guard let e = try engineOrSkip() else { return }
        var requests: [GenerationRequest] = []
        for i in 0..<6 {
            if i % 2 == 0 {
                requests.append(try request(e, "Describe person number \(i).", seed: UInt64(i), temperature: 0.8))
            } else {
                requests.append(GenerationRequest(promptTokens: e.encode("Once upon a time \(i)"), maxTokens: 30, ignoreEOS: true))
            }
        }
        let alone = try requests.map { try e.generate($0).tokens }
        var options = BatchEngine.Options()
        options.kvCacheBytes = 8 * KVBlockStorage.bytesPerBlock(layers: e.model.config.layerCount, kvDim: e.model.config.kvDim)
        options.prefixCaching = false
        let engine = try BatchEngine(engine: e, options: options)
        defer { engine.shutdown() }
        let batched = try await BatchEngineTests.runAll(engine, requests)
        for i in requests.indices { #expect(batched[i].tokens == alone[i], "request \(i)") }
        #expect(engine.stats.preemptions > 0, "the pool is too small for all of them at once")
    }
}
