import GGUF

/// BERT (sentence-transformers models such as all-MiniLM-L6-v2): post-norm LayerNorm layers with biases,
/// absolute positions, GELU; pooling as the file says (mean unless `pooling_type` says otherwise).
enum Bert {
    static func spec(_ gguf: GGUFFile) throws -> EncoderSpec {
        let arch = try gguf.string("general.architecture") ?? "bert"
        let c = try ModelConfig(gguf: gguf)
        let eps = try gguf.double("\(arch).attention.layer_norm_epsilon") ?? 1e-12
        guard eps > 0, eps < 1 else { throw ModelError.invalidHyperparameter("\(arch).attention.layer_norm_epsilon", "\(eps)") }
        if try gguf.bool("\(arch).attention.causal") == true {
            throw ModelError.unsupportedFeature("a causal BERT")
        }
        let type = try gguf.int("\(arch).pooling_type") ?? Pooling.mean.rawValue
        guard let pooling = Pooling(rawValue: type) else {
            throw ModelError.invalidHyperparameter("\(arch).pooling_type", "\(type) (supported: 1 mean, 2 cls, 3 last)")
        }
        return EncoderSpec(config: c, layerNormEps: Float(eps), pooling: pooling)
    }
}
