import GGUF

/// Gemma 3: embeddings scaled by sqrt(width); RMSNorm of each q and k head; NeoX RoPE with base 10 000
/// on sliding-window layers and the file's base on global ones (every sixth layer unless the file gives a
/// pattern); norms after attention and after the feed-forward as well as before; GeGLU. The file's norm
/// weights already include Gemma's +1.
enum Gemma3 {
    static func spec(_ gguf: GGUFFile) throws -> DecoderSpec {
        let arch = "gemma3"
        var c = try ModelConfig(gguf: gguf)
        c.ropeNeox = true
        var s = DecoderSpec(config: c)
        s.activation = .gelu
        s.embeddingScale = Float(c.embeddingLength).squareRoot()
        // The 27B model scales by its width per head, not its head width (as Gemma's reference does).
        s.attentionScale = c.layerCount == 62
            ? 1 / Float(c.embeddingLength / c.headCount).squareRoot() : 1 / Float(c.headDim).squareRoot()
        if try gguf.double("\(arch).final_logit_softcapping") ?? 0 != 0 {
            throw ModelError.unsupportedFeature("final logit soft-capping")
        }
        guard let window = try DecoderSpec.slidingWindow(gguf, arch) else { return s }
        let sliding = try slidingLayers(gguf, arch, layers: c.layerCount)
        let localBase = Float(try gguf.double("\(arch).rope.freq_base_swa") ?? 10000)
        guard localBase > 0, localBase.isFinite else {
            throw ModelError.invalidHyperparameter("\(arch).rope.freq_base_swa", "\(localBase)")
        }
        for i in 0..<c.layerCount where sliding[i] {
            s.layerWindow[i] = window
            s.layerRoPE[i].base = localBase
            s.layerRoPE[i].scale = 1
        }
        return s
    }

    /// `attention.sliding_window_pattern`: one flag per layer, or a period n (layers i with i % n < n - 1
    /// slide; 0: all); 6 when absent.
    static func slidingLayers(_ gguf: GGUFFile, _ arch: String, layers: Int) throws -> [Bool] {
        let key = "\(arch).attention.sliding_window_pattern"
        if let flags = gguf.metadata[key]?.arrayValue {
            guard flags.count == layers else { throw ModelError.invalidHyperparameter(key, "\(flags.count) flags for \(layers) layers") }
            return try flags.map {
                guard let b = $0.boolValue else { throw ModelError.invalidHyperparameter(key, "a non-boolean flag") }
                return b
            }
        }
        let n = try gguf.int(key) ?? 6
        guard n >= 0, n <= layers else { throw ModelError.invalidHyperparameter(key, "\(n)") }
        return (0..<layers).map { n == 0 || $0 % n < n - 1 }
    }
}
