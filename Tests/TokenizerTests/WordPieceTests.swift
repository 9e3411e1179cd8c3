import Foundation
import GGUF
import Testing
import Tokenizer

/// BERT's WordPiece on a small vocabulary, in both forms GGUF files hold it: llama.cpp's phantom space
/// ("▁word", continuation pieces bare) and BERT's own ("word", "##piece"). The real vocabulary against
/// Hugging Face's tokenizer is in ModelsTests/EmbeddingTests.
@Suite struct WordPieceTests {
    static let words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##able", "##aff", "##ord", "the", "cafe",
                        "!", ",", "a", "##b", "中", "文", "x", "##x"]

    static func tokenizer(phantom: Bool, extra: [String: GGUFValue] = [:]) throws -> Tokenizer {
        let tokens = words.map { w -> String in
            guard phantom else { return w }
            if w.hasPrefix("[") { return w }
            return w.utf8.starts(with: "##".utf8) ? String(w.dropFirst(2)) : "\u{2581}" + w
        }
        var md: [String: GGUFValue] = [
            "tokenizer.ggml.model": .string("bert"),
            "tokenizer.ggml.tokens": .array(.string, tokens.map { .string($0) }),
            "tokenizer.ggml.token_type": .array(.int32, words.map { .int32($0.hasPrefix("[") ? ($0 == "[UNK]" ? 2 : 3) : 1) }),
            "tokenizer.ggml.unknown_token_id": .uint32(1),
            "tokenizer.ggml.bos_token_id": .uint32(2),
            "tokenizer.ggml.seperator_token_id": .uint32(3),
        ]
        md.merge(extra) { $1 }
        return try Tokenizer(metadata: md)
    }

    func ids(_ t: Tokenizer, _ text: String) -> [String] {
        t.encode(text, addSpecial: true, parseSpecial: true).map { Self.words[$0] }
    }

    @Test(arguments: [true, false])
    func splitsWordsIntoLongestPieces(phantom: Bool) throws {
        let t = try Self.tokenizer(phantom: phantom)
        #expect(ids(t, "unaffordable") == ["[CLS]", "un", "##aff", "##ord", "##able", "[SEP]"])
        // Case and accents go; punctuation splits; CJK characters are words of their own.
        #expect(ids(t, "The CAFÉ, unable!") == ["[CLS]", "the", "cafe", ",", "un", "##able", "!", "[SEP]"])
        #expect(ids(t, "中文a") == ["[CLS]", "中", "文", "a", "[SEP]"])
        // A word with a part no piece covers is one unknown token, not partly pieces.
        #expect(ids(t, "unz the") == ["[CLS]", "[UNK]", "the", "[SEP]"])
        // A word of more than 100 characters is unknown even when pieces would cover it.
        #expect(ids(t, String(repeating: "x", count: 100)) == ["[CLS]", "x"] + Array(repeating: "##x", count: 99) + ["[SEP]"])
        #expect(ids(t, String(repeating: "x", count: 101)) == ["[CLS]", "[UNK]", "[SEP]"])
        // Control and format characters vanish; other whitespace separates.
        #expect(ids(t, "a\u{200B}b\u{00AD}\tthe\u{3000}x\u{0000}") == ["[CLS]", "a", "##b", "the", "x", "[SEP]"])
        // Special tokens written in the text count as such.
        #expect(ids(t, "the [SEP] the") == ["[CLS]", "the", "[SEP]", "the", "[SEP]"])
        #expect(ids(t, "") == ["[CLS]", "[SEP]"])
    }

    @Test func sepCanBeTurnedOff() throws {
        let t = try Self.tokenizer(phantom: true, extra: ["tokenizer.ggml.add_sep_token": .bool(false)])
        #expect(ids(t, "the") == ["[CLS]", "the"])
    }

    @Test func decodesWithSpacesBetweenWords() throws {
        let t = try Self.tokenizer(phantom: true)
        #expect(t.decode(t.encode("unaffordable, the cafe", addSpecial: false)) == " unaffordable , the cafe")
    }
}
