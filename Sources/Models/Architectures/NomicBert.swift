import GGUF

/// Nomic BERT (nomic-embed-text): BERT's post-norm layers with rotary positions (GPT-NeoX halves) instead of
/// learned ones, a fused QKV projection and SwiGLU feed-forwards, usually without biases.
enum NomicBert {
    static func spec(_ gguf: GGUFFile) throws -> EncoderSpec {
        var spec = try Bert.spec(gguf)
        let c = spec.config
        guard c.ropeFreqBase.isFinite, c.ropeFreqBase > 0 else {
            throw ModelError.invalidHyperparameter("\(c.architecture).rope.freq_base", "\(c.ropeFreqBase)")
        }
        spec.positions = .rotary(RoPE(dimensions: c.ropeDim, base: c.ropeFreqBase, neox: true))
        spec.feedForward = .swiglu
        return spec
    }
}
