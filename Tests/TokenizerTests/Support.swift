import Foundation
import GGUF
import SwiftletTesting
import Testing
import Tokenizer

/// The real SmolLM2 GGUF (located by `TestModel`). Tests that need the model fail loudly
/// when it is missing, unless `SWIFTLET_SKIP_MODEL_TESTS=1`.
enum ModelLocator {
    static var path: String? { TestModel.path }

    static var skipModelTests: Bool {
        ProcessInfo.processInfo.environment["SWIFTLET_SKIP_MODEL_TESTS"] == "1"
    }

    /// The model's GGUF, or nil when model tests are skipped; records an issue when the model is missing.
    static func gguf(sourceLocation: SourceLocation = #_sourceLocation) throws -> GGUFFile? {
        if skipModelTests { return nil }
        guard let file = shared else {
            Issue.record("SmolLM2 GGUF not found (set SWIFTLET_MODEL_PATH, or SWIFTLET_SKIP_MODEL_TESTS=1 to skip)",
                         sourceLocation: sourceLocation)
            return nil
        }
        return try file.get()
    }

    /// The SmolLM2 tokenizer as stored in the file.
    static func tokenizer(sourceLocation: SourceLocation = #_sourceLocation) throws -> Tokenizer? {
        guard try gguf(sourceLocation: sourceLocation) != nil, let t = sharedTokenizer else { return nil }
        return try t.get()
    }

    /// Loaded once per process (the file is 98 MB; building the tokenizer takes a moment).
    private static let shared: Result<GGUFFile, any Error>? = path.map { p in Result { try GGUFFile(path: p) } }
    private static let sharedTokenizer: Result<Tokenizer, any Error>? = shared.map { r in
        Result { try Tokenizer(gguf: try r.get()) }
    }
}

// MARK: Fixtures

struct MetadataOverride: Decodable {
    var string: String?
    var bool: Bool?
}

struct ReferenceCase: Decodable {
    var text: String
    var addSpecial: Bool
    var parseSpecial: Bool
    var ids: [Int]
}

struct ReferenceInfo: Decodable {
    var vocabularySize: Int
    var bos: Int?
    var eos: Int?
    var eot: Int?
    var addBOS: Bool
    var addEOS: Bool
    var endOfGeneration: [Int]
    var pieceHashes: [String: String]
}

struct Variant: Decodable {
    var name: String
    var overrides: [String: MetadataOverride?]
    var reference: ReferenceInfo
    var cases: [ReferenceCase]
}

struct BPEFixture: Decodable {
    var llama_cpp_python: String
    var model: String
    var variants: [Variant]
}

struct SPMVocabulary: Decodable {
    var tokens: [String]
    var scores: [Float]
    var types: [Int]
    var bos: Int
    var eos: Int
    var unknown: Int
}

struct SPMFixture: Decodable {
    var llama_cpp_python: String
    var vocabulary: SPMVocabulary
    var variants: [Variant]
}

enum Fixtures {
    static var directory: URL {
        get throws {
            try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        }
    }

    static func load<T: Decodable>(_ name: String, as: T.Type) throws -> T {
        let data = try Data(contentsOf: try directory.appendingPathComponent(name))
        return try JSONDecoder().decode(T.self, from: data)
    }

    static let bpe: Result<BPEFixture, any Error> = Result { try load("tokenizer_bpe.json", as: BPEFixture.self) }
    static let spm: Result<SPMFixture, any Error> = Result { try load("tokenizer_spm.json", as: SPMFixture.self) }
}

func applying(_ overrides: [String: MetadataOverride?], to base: [String: GGUFValue]) -> [String: GGUFValue] {
    var md = base
    for (k, v) in overrides {
        if let v {
            if let s = v.string { md[k] = .string(s) }
            if let b = v.bool { md[k] = .bool(b) }
        } else {
            md[k] = nil
        }
    }
    return md
}

/// Tokenizer metadata of the synthetic SentencePiece fixture vocabulary.
func spmMetadata(_ v: SPMVocabulary) -> [String: GGUFValue] {
    [
        "general.architecture": .string("llama"),
        "tokenizer.ggml.model": .string("llama"),
        "tokenizer.ggml.tokens": .array(.string, v.tokens.map { .string($0) }),
        "tokenizer.ggml.scores": .array(.float32, v.scores.map { .float32($0) }),
        "tokenizer.ggml.token_type": .array(.int32, v.types.map { .int32(Int32($0)) }),
        "tokenizer.ggml.bos_token_id": .uint32(UInt32(v.bos)),
        "tokenizer.ggml.eos_token_id": .uint32(UInt32(v.eos)),
        "tokenizer.ggml.unknown_token_id": .uint32(UInt32(v.unknown)),
    ]
}

/// Same hash as the fixture script: FNV-1a 64 over (UInt32 LE length ‖ bytes) of every token's piece.
func pieceHash(_ t: Tokenizer, renderSpecial: Bool) -> String {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    func feed(_ b: UInt8) {
        h ^= UInt64(b)
        h = h &* 0x0000_0100_0000_01b3
    }
    for id in 0..<t.vocabularySize {
        let p = renderSpecial || !t.isSpecial(id) ? t.tokenBytes(id) : []
        withUnsafeBytes(of: UInt32(p.count).littleEndian) { $0.forEach(feed) }
        p.forEach(feed)
    }
    let s = String(h, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}
