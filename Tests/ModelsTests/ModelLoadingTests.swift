import Foundation
import GGUF
import Models
import Testing

@Suite struct ModelLoadingTests {
    func tinyFile(architecture: String, extra: [(String, GGUFValue)] = []) throws -> GGUFFile {
        var w = GGUFWriter()
        w.add("general.architecture", .string(architecture))
        for (k, v) in extra { w.add(k, v) }
        w.add(tensor: .init(name: "token_embd.weight", shape: [32, 4], type: .f32, data: [UInt8](repeating: 0, count: 32 * 4 * 4)))
        return try GGUFFile(bytes: w.bytes())
    }

    @Test func unknownArchitectureListsSupported() throws {
        let f = try tinyFile(architecture: "mamba9")
        do {
            _ = try ModelRegistry.load(f, threads: 1)
            Issue.record("expected an error")
        } catch let e as ModelError {
            let text = "\(e)"
            #expect(text.contains("mamba9") && text.contains("llama"))
        }
    }

    @Test func missingHyperparameterIsNamed() throws {
        let f = try tinyFile(architecture: "llama")
        #expect(throws: GGUFError.missingMetadata("llama.block_count")) { try ModelRegistry.load(f, threads: 1) }
    }

    @Test func missingTensorIsNamed() throws {
        let f = try tinyFile(architecture: "llama", extra: [
            ("llama.block_count", .uint32(1)), ("llama.context_length", .uint32(64)),
            ("llama.embedding_length", .uint32(32)), ("llama.feed_forward_length", .uint32(64)),
            ("llama.attention.head_count", .uint32(2)),
        ])
        #expect(throws: GGUFError.missingTensor("output_norm.weight")) { try ModelRegistry.load(f, threads: 1) }
    }

    /// A tiny random Llama built in memory runs, and its cache-based decode equals a full re-run.
    @Test func incrementalDecodeEqualsFullPass() throws {
        let dim = 64, ff = 128, vocab = 40, heads = 4, kvHeads = 2, layers = 2
        var w = GGUFWriter()
        for (k, v) in [("general.architecture", GGUFValue.string("llama")), ("llama.block_count", .uint32(UInt32(layers))),
                       ("llama.context_length", .uint32(128)), ("llama.embedding_length", .uint32(UInt32(dim))),
                       ("llama.feed_forward_length", .uint32(UInt32(ff))), ("llama.attention.head_count", .uint32(UInt32(heads))),
                       ("llama.attention.head_count_kv", .uint32(UInt32(kvHeads))), ("llama.rope.freq_base", .float32(10000))] {
            w.add(k, v)
        }
        var rng = SystemRandomNumberGenerator()
        func f32(_ n: Int, scale: Float = 0.2, base: Float = 0) -> [UInt8] {
            var out: [UInt8] = []
            for _ in 0..<n {
                let v = base + Float.random(in: -scale...scale, using: &rng)
                withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) }
            }
            return out
        }
        w.add(tensor: .init(name: "token_embd.weight", shape: [dim, vocab], type: .f32, data: f32(dim * vocab, scale: 1)))
        w.add(tensor: .init(name: "output_norm.weight", shape: [dim], type: .f32, data: f32(dim, scale: 0.1, base: 1)))
        let kvDim = dim / heads * kvHeads
        for l in 0..<layers {
            let p = "blk.\(l)."
            w.add(tensor: .init(name: p + "attn_norm.weight", shape: [dim], type: .f32, data: f32(dim, scale: 0.1, base: 1)))
            w.add(tensor: .init(name: p + "ffn_norm.weight", shape: [dim], type: .f32, data: f32(dim, scale: 0.1, base: 1)))
            for (n, shape) in [("attn_q", [dim, dim]), ("attn_k", [dim, kvDim]), ("attn_v", [dim, kvDim]), ("attn_output", [dim, dim]),
                               ("ffn_gate", [dim, ff]), ("ffn_up", [dim, ff]), ("ffn_down", [ff, dim])] {
                w.add(tensor: .init(name: p + n + ".weight", shape: shape, type: .f32, data: f32(shape[0] * shape[1])))
            }
        }
        let model = try ModelRegistry.load(try GGUFFile(bytes: w.bytes()), threads: 2)
        let tokens = [3, 17, 5, 39, 0, 22, 8]
        var full: [Float] = []
        let n = try model.forward(tokens: tokens, cache: model.makeCache(capacity: 16), logits: .all, into: &full)
        #expect(n == tokens.count)
        let cache = model.makeCache(capacity: 16)
        var step: [Float] = []
        for (i, t) in tokens.enumerated() {
            try model.forward(tokens: [t], cache: cache, logits: .last, into: &step)
            for j in 0..<vocab {
                #expect(abs(step[j] - full[i * vocab + j]) < 1e-2, "token \(i) logit \(j)")
            }
        }
        #expect(cache.count == tokens.count)
        // Context overflow and bad token ids are errors, not crashes.
        #expect(throws: ModelError.self) { try model.forward(tokens: Array(repeating: 1, count: 10), cache: cache, logits: .last, into: &step) }
        #expect(throws: ModelError.self) { try model.forward(tokens: [vocab], cache: model.makeCache(capacity: 4), logits: .last, into: &step) }
    }
}
