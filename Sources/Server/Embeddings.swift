import Engine
import Foundation
import Hummingbird
import Logging

/// POST /v1/embeddings, as OpenAI's: `input` a string, strings, token ids or arrays of token ids.
public struct EmbeddingRequest: Codable, Sendable {
    public var model: String
    public var input: CompletionPrompt
    /// "float" (default) or "base64" (little-endian float32, what the openai client asks for).
    public var encodingFormat: String?
    public var dimensions: Int?
    public var user: String?

    enum CodingKeys: String, CodingKey {
        case model, input, dimensions, user, encodingFormat = "encoding_format"
    }

    public init(model: String, input: CompletionPrompt, encodingFormat: String? = nil, dimensions: Int? = nil) {
        self.model = model
        self.input = input
        self.encodingFormat = encodingFormat
        self.dimensions = dimensions
    }
}

struct EmbeddingList: Encodable {
    struct Item: Encodable {
        var object = "embedding"
        var index: Int
        var embedding: Vector
    }

    enum Vector: Encodable {
        case floats([Float])
        case base64(String)

        func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .floats(let f): try c.encode(f)
            case .base64(let s): try c.encode(s)
            }
        }
    }

    struct Usage: Encodable {
        var promptTokens: Int
        var totalTokens: Int
        enum CodingKeys: String, CodingKey { case promptTokens = "prompt_tokens", totalTokens = "total_tokens" }
    }

    var object = "list"
    var data: [Item]
    var model: String
    var usage: Usage
}

extension OpenAIServer {
    /// OpenAI's most inputs in one request.
    public static let maxEmbeddingInputs = 2048

    func embeddings(_ body: EmbeddingRequest, logger: Logger) async throws -> Response {
        let model = try model(named: body.model)
        guard let embedder = model.embedder else {
            let why = model.engine?.pooling.map { "its file declares \($0) pooling, which a causal model's states do not support here (last)" }
                ?? "it generates text"
            throw APIError.invalidRequest(
                "The model '\(model.id)' is not an embedding model (\(why)); /v1/embeddings needs one such as all-MiniLM-L6-v2.",
                param: "model", code: "model_not_supported")
        }
        let base64: Bool
        switch body.encodingFormat {
        case nil, "float": base64 = false
        case "base64": base64 = true
        case let other?: throw APIError.invalidValue("encoding_format", "must be 'float' or 'base64', not '\(other)'.")
        }
        let dims = embedder.dimensions
        var keep = dims
        if let d = body.dimensions, d != dims {
            guard d >= 1 else { throw APIError.invalidValue("dimensions", "must be >= 1.") }
            guard let least = embedder.minimumDimensions else {
                throw APIError.invalidValue("dimensions",
                    "this model's embeddings have \(dims) dimensions and it was not trained to be truncated (Matryoshka); leave 'dimensions' out or give \(dims).")
            }
            guard (least...dims).contains(d) else {
                throw APIError.invalidValue("dimensions", "must be between \(least) and \(dims) for this model.")
            }
            keep = d
        }
        let count = switch body.input {
        case .texts(let t): t.count
        case .tokens(let t): t.count
        }
        guard count >= 1 else { throw APIError.invalidValue("input", "must not be empty.") }
        guard count <= Self.maxEmbeddingInputs else {
            throw APIError.invalidValue("input", "at most \(Self.maxEmbeddingInputs) inputs per request are allowed.")
        }
        let limit = embedder.contextLength, vocab = embedder.vocabularySize
        var sequences: [[Int]] = []
        sequences.reserveCapacity(count)
        switch body.input {
        case .texts(let texts):
            for (i, t) in texts.enumerated() {
                let param = "input[\(i)]"
                guard !t.isEmpty else { throw APIError.invalidValue(param, "must not be an empty string.") }
                let tokens = embedder.tokenize(t)
                guard tokens.count <= limit else {
                    throw APIError.contextLengthExceeded(
                        "\(param) has \(tokens.count) tokens; this model's maximum context length is \(limit) tokens.", param: param)
                }
                sequences.append(tokens)
            }
        case .tokens(let lists):
            for (i, tokens) in lists.enumerated() {
                let param = "input[\(i)]"
                guard !tokens.isEmpty else { throw APIError.invalidValue(param, "must not be an empty array of tokens.") }
                guard tokens.count <= limit else {
                    throw APIError.contextLengthExceeded(
                        "\(param) has \(tokens.count) tokens; this model's maximum context length is \(limit) tokens.", param: param)
                }
                if let bad = tokens.first(where: { !(0..<vocab).contains($0) }) {
                    throw APIError.invalidValue(param, "token id \(bad) is out of range (0 to \(vocab - 1)).")
                }
                sequences.append(tokens)
            }
        }
        let promptTokens = sequences.reduce(0) { $0 + $1.count }
        metrics.prompt(tokens: promptTokens)
        let vectors: [[Float]]
        do {
            vectors = try await embedder.embed(sequences)
        } catch let e as GenerationServiceError {
            if case .queueFull = e { throw APIError.queueFull(retryAfterSeconds: configuration.retryAfterSeconds) }
            throw e
        }
        let data = vectors.enumerated().map { i, whole in
            let v = EmbeddingEngine.truncated(whole, to: keep)
            return EmbeddingList.Item(index: i, embedding: base64 ? .base64(Self.base64(v)) : .floats(v))
        }
        return JSONResponse.make(status: .ok, EmbeddingList(
            data: data, model: model.id, usage: .init(promptTokens: promptTokens, totalTokens: promptTokens)))
    }

    /// Little-endian float32 bytes in base64, as OpenAI sends them.
    static func base64(_ v: [Float]) -> String {
        var bytes = [UInt8]()
        bytes.reserveCapacity(v.count * 4)
        for x in v {
            let b = x.bitPattern.littleEndian
            bytes.append(contentsOf: [UInt8(b & 0xFF), UInt8(b >> 8 & 0xFF), UInt8(b >> 16 & 0xFF), UInt8(b >> 24)])
        }
        return Data(bytes).base64EncodedString()
    }
}
