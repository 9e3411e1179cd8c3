/// Why a tokenizer could not be built from GGUF metadata.
public enum TokenizerError: Error, Equatable, Sendable, CustomStringConvertible {
    case missingMetadata(String)
    case wrongMetadataType(key: String, expected: String)
    case unknownModel(String)
    case unknownPreTokenizer(String)
    case inconsistentMetadata(String)

    public var description: String {
        switch self {
        case .missingMetadata(let k): "tokenizer: missing required metadata '\(k)'"
        case .wrongMetadataType(let k, let e): "tokenizer: metadata '\(k)' should be \(e)"
        case .unknownModel(let m):
            "unknown tokenizer model '\(m)' (tokenizer.ggml.model); supported: 'gpt2' (byte-level BPE), 'llama' (SentencePiece BPE)"
        case .unknownPreTokenizer(let p):
            "unknown pre-tokenizer '\(p)' (tokenizer.ggml.pre); supported: "
                + Tokenizer.supportedPreTokenizers.sorted().joined(separator: ", ")
        case .inconsistentMetadata(let m): "tokenizer: \(m)"
        }
    }
}
