import GGUF

/// Llama 1–3, Mistral, SmolLM and others exported as `llama`: RMSNorm, GQA attention with RoPE on
/// adjacent pairs, SwiGLU. Llama 3's RoPE scaling comes as per-frequency factors (`rope_freqs.weight`).
enum Llama {
    static func spec(_ gguf: GGUFFile) throws -> DecoderSpec {
        DecoderSpec(config: try ModelConfig(gguf: gguf))
    }
}

/// Qwen 2 / 2.5 (Llama with q/k/v biases and NeoX RoPE) and Qwen 3 (no biases; RMSNorm of each q and k
/// head, which the decoder applies wherever `attn_q_norm`/`attn_k_norm` exist), and their mixtures of
/// experts: Qwen 3 MoE renormalises the picked experts' weights, Qwen 2 MoE does not and adds a shared
/// expert (both read from the file's tensors).
enum Qwen {
    static func spec(_ gguf: GGUFFile) throws -> DecoderSpec {
        var c = try ModelConfig(gguf: gguf)
        c.ropeNeox = true
        var s = DecoderSpec(config: c)
        s.normalizeExpertWeights = c.architecture != "qwen2moe"
        return s
    }
}

/// OLMoE: experts without renormalised weights, RMSNorm over the whole q and k projections, NeoX RoPE.
enum OLMoE {
    static func spec(_ gguf: GGUFFile) throws -> DecoderSpec {
        var c = try ModelConfig(gguf: gguf)
        c.ropeNeox = true
        guard c.expertCount > 0 else { throw ModelError.invalidHyperparameter("olmoe.expert_count", "0") }
        var s = DecoderSpec(config: c)
        s.normalizeExpertWeights = false
        return s
    }
}

/// Phi-3: Q, K and V in one `attn_qkv` tensor, gate and up stacked in `ffn_up`, NeoX RoPE. Its
/// sliding-window metadata is ignored, as llama.cpp does (the converters do not write it correctly).
enum Phi3 {
    static func spec(_ gguf: GGUFFile) throws -> DecoderSpec {
        var c = try ModelConfig(gguf: gguf)
        c.ropeNeox = true
        if gguf.tensorInfo("rope_factors_long.weight") != nil {
            throw ModelError.unsupportedFeature("Phi-3's LongRoPE (rope_factors_long.weight)")
        }
        var s = DecoderSpec(config: c)
        s.fusedQKV = gguf.tensorInfo("blk.0.attn_qkv.weight") != nil
        s.fusedGateUp = gguf.tensorInfo("blk.0.ffn_gate.weight") == nil
        return s
    }
}
