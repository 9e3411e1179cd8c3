import Foundation
import GGUF
import Testing
import Tokenizer

/// Round trips, streaming, special tokens, BOS/EOS and errors.
@Suite struct TokenizerBehaviourTests {
    static func corpus() throws -> [String] {
        var seen = Set<String>()
        return try Fixtures.bpe.get().variants[0].cases.map(\.text).filter { seen.insert($0).inserted }
    }

    static func spmTokenizer(_ overrides: [String: GGUFValue] = [:]) throws -> Tokenizer {
        var md = spmMetadata(try Fixtures.spm.get().vocabulary)
        md.merge(overrides) { $1 }
        return try Tokenizer(metadata: md)
    }

    // MARK: Round trips

    @Test func bpeRoundTrip() throws {
        guard let t = try ModelLocator.tokenizer() else { return }
        for text in try Self.corpus() {
            #expect(t.decode(t.encode(text, addSpecial: false)) == text)
            #expect(t.decode(t.encode(text, addSpecial: true)) == text)
            // Special tokens parsed from text come back when rendered.
            #expect(t.decode(t.encode(text, addSpecial: false, parseSpecial: true), renderSpecial: true) == text)
        }
    }

    @Test func sentencePieceRoundTrip() throws {
        let t = try Self.spmTokenizer()
        // User-defined tokens are always split off, and SentencePiece then prefixes the following text
        // with a space (llama.cpp does the same), so such texts do not round-trip.
        for text in try Self.corpus() where !text.contains("<user>") {
            #expect(t.decode(t.encode(text)) == text)
            #expect(t.decode(t.encode(text, addSpecial: false)) == text)
        }
        // Byte fallback: characters without pieces become <0xXX> tokens.
        let ids = t.encode("你", addSpecial: false)
        #expect(ids.map { t.tokenText($0) } == ["▁", "<0xE4>", "<0xBD>", "<0xA0>"])
        #expect(t.tokenBytes(ids[1]) == [0xE4])
    }

    // MARK: Streaming

    func checkStreaming(_ t: Tokenizer, _ ids: [Int], renderSpecial: Bool = false,
                        sourceLocation: SourceLocation = #_sourceLocation) {
        var s = StreamingDetokenizer(tokenizer: t, renderSpecial: renderSpecial)
        var chunks: [String] = []
        for id in ids { chunks.append(s.append(id)) }
        chunks.append(s.flush())
        let full = t.decode(ids, renderSpecial: renderSpecial)
        #expect(chunks.joined() == full, sourceLocation: sourceLocation)
        if !full.contains("\u{FFFD}") {
            #expect(!chunks.contains { $0.contains("\u{FFFD}") }, "a chunk has a broken character",
                    sourceLocation: sourceLocation)
        }
    }

    @Test func streamingConcatenatesToDecode() throws {
        guard let t = try ModelLocator.tokenizer() else { return }
        for text in try Self.corpus() {
            checkStreaming(t, t.encode(text, addSpecial: true, parseSpecial: true))
            checkStreaming(t, t.encode(text, addSpecial: true, parseSpecial: true), renderSpecial: true)
        }
        let spm = try Self.spmTokenizer()
        for text in try Self.corpus() { checkStreaming(spm, spm.encode(text)) }
    }

    @Test func streamingHoldsBackPartialCharacters() throws {
        guard let t = try ModelLocator.tokenizer() else { return }
        let text = "a👨‍👩‍👧‍👦b你好"
        let ids = t.encode(text, addSpecial: false)
        var s = StreamingDetokenizer(tokenizer: t)
        var out = ""
        for id in ids {
            let chunk = s.append(id)
            // Each chunk is whole scalars: re-encoding gives back exactly the bytes it stands for.
            #expect(!chunk.unicodeScalars.contains("\u{FFFD}"))
            out += chunk
            #expect(s.pendingByteCount < 4)
        }
        out += s.flush()
        #expect(out == text)
        // Some token of the emoji is a partial character, so at least once nothing could be emitted.
        var s2 = StreamingDetokenizer(tokenizer: t)
        let emitted = ids.map { s2.append($0) }
        #expect(emitted.contains(""))
    }

    @Test func streamingInvalidBytesMatchDecode() throws {
        let t = try Self.spmTokenizer()
        func byte(_ b: UInt8) -> Int { t.tokenID(String(format: "<0x%02X>", b))! }
        let a = t.tokenID("a")!
        let sequences: [[Int]] = [
            [byte(0xF0), a],                       // truncated 4-byte sequence
            [byte(0xE4), byte(0xBD)],              // incomplete at the end
            [byte(0xFF), byte(0xC0), byte(0x80), a],  // never-valid bytes
            [byte(0xED), byte(0xA0), byte(0x80)],  // surrogate
            [byte(0xE4), byte(0xBD), byte(0xA0), a],  // complete 你 then a
        ]
        for ids in sequences { checkStreaming(t, ids) }
        var s = StreamingDetokenizer(tokenizer: t)
        #expect(s.append(byte(0xE4)) == "")
        #expect(s.append(byte(0xBD)) == "")
        #expect(s.append(byte(0xA0)) == "你")
    }

    @Test func sentencePieceLeadingSpace() throws {
        let t = try Self.spmTokenizer()
        let ids = t.encode("Hello world")
        #expect(ids.first == t.bosToken)
        #expect(t.tokenText(ids[1]).hasPrefix("▁"))
        #expect(t.decode(ids) == "Hello world")
        var s = StreamingDetokenizer(tokenizer: t)
        #expect(ids.map { s.append($0) }.joined() + s.flush() == "Hello world")
        // Without the prefix option nothing is added or stripped.
        let np = try Self.spmTokenizer(["tokenizer.ggml.add_space_prefix": .bool(false)])
        #expect(np.decode(np.encode(" Hello")) == " Hello")
        #expect(!np.tokenText(np.encode("Hello", addSpecial: false)[0]).hasPrefix("▁"))
    }

    // MARK: Special tokens

    @Test func specialTokensParsedOnlyWhenAsked() throws {
        guard let t = try ModelLocator.tokenizer() else { return }
        let imStart = try #require(t.tokenID("<|im_start|>"))
        let imEnd = try #require(t.tokenID("<|im_end|>"))
        let text = "<|im_start|>user\nHi<|im_end|>"
        let parsed = t.encode(text, addSpecial: false, parseSpecial: true)
        #expect(parsed.first == imStart)
        #expect(parsed.last == imEnd)
        let literal = t.encode(text, addSpecial: false, parseSpecial: false)
        #expect(!literal.contains(imStart) && !literal.contains(imEnd))
        #expect(t.decode(literal) == text)
        // Control tokens render as nothing unless asked.
        #expect(t.decode(parsed) == "user\nHi")
        #expect(t.decode(parsed, renderSpecial: true) == text)
        #expect(t.tokenBytes(imEnd) == Array("<|im_end|>".utf8))
        #expect(t.isSpecial(imEnd))
        #expect(t.attributes(of: imEnd).contains(.control))
    }

    @Test func userDefinedTokensAlwaysMatched() throws {
        let t = try Self.spmTokenizer()
        let user = try #require(t.tokenID("<user>"))
        let ctrl = try #require(t.tokenID("<ctrl>"))
        let plain = t.encode("a<user>b<ctrl>", addSpecial: false)
        #expect(plain.contains(user))
        #expect(!plain.contains(ctrl))
        let parsed = t.encode("a<user>b<ctrl>", addSpecial: false, parseSpecial: true)
        #expect(parsed.contains(user) && parsed.last == ctrl)
        // As in llama.cpp, SentencePiece text after any special token gets the space prefix again.
        #expect(t.decode(parsed) == "a<user> b")
        #expect(t.decode(parsed, renderSpecial: true) == "a<user> b<ctrl>")
    }

    @Test func smolLMSpecialIDs() throws {
        guard let t = try ModelLocator.tokenizer() else { return }
        #expect(t.vocabularySize == 49152)
        #expect(t.bosToken == 1)
        #expect(t.eosToken == 2)
        #expect(t.eotToken == 2)  // <|im_end|>
        #expect(t.endOfGenerationTokens == [0, 2, 4])
        #expect(t.tokenText(0) == "<|endoftext|>")
        #expect(t.tokenID("Hello") != nil)
        #expect(t.tokenID("no such token really") == nil)
        let hello = try #require(t.tokenID("Ġhello"))
        #expect(t.tokenBytes(hello) == Array(" hello".utf8))
        #expect(t.encode("Hello world", addSpecial: false) == [19556, 905])
    }

    // MARK: BOS / EOS

    @Test func addSpecialHonoursMetadata() throws {
        guard let file = try ModelLocator.gguf() else { return }
        let stored = try Tokenizer(gguf: file)  // add_bos_token = false in the file
        #expect(!stored.addBOS && !stored.addEOS)
        #expect(stored.encode("hi", addSpecial: true) == stored.encode("hi", addSpecial: false))

        var md = file.metadata
        md["tokenizer.ggml.add_bos_token"] = .bool(true)
        md["tokenizer.ggml.add_eos_token"] = .bool(true)
        let both = try Tokenizer(metadata: md)
        let ids = both.encode("hi", addSpecial: true)
        #expect(ids.first == 1 && ids.last == 2 && ids.count == 3)
        #expect(both.encode("hi", addSpecial: false) == Array(ids[1..<2]))
        #expect(both.encode("", addSpecial: true) == [1, 2])
        #expect(both.encode("", addSpecial: false) == [])

        // llama3 pre-tokenizer: add_bos defaults to true when the key is absent.
        md["tokenizer.ggml.add_bos_token"] = nil
        md["tokenizer.ggml.add_eos_token"] = nil
        md["tokenizer.ggml.pre"] = .string("llama-bpe")
        #expect(try Tokenizer(metadata: md).addBOS)
    }

    @Test func sentencePieceBOSDefaults() throws {
        let t = try Self.spmTokenizer()
        #expect(t.addBOS && !t.addEOS)
        #expect(t.encode("") == [1])
        #expect(t.encode("", addSpecial: false) == [])
        let e = try Self.spmTokenizer(["tokenizer.ggml.add_eos_token": .bool(true)])
        #expect(e.encode("a").last == 2)
        #expect(e.endOfGenerationTokens.contains(2))
    }

    // MARK: Errors

    static func tinyVocab(model: String, pre: String?, merges: Bool = true) -> [UInt8] {
        var w = GGUFWriter()
        w.add("general.architecture", .string("llama"))
        w.add("tokenizer.ggml.model", .string(model))
        if let pre { w.add("tokenizer.ggml.pre", .string(pre)) }
        let toks = ["a", "b", "ab", "Ġ", "Ġab"]
        w.add("tokenizer.ggml.tokens", .array(.string, toks.map { .string($0) }))
        if merges { w.add("tokenizer.ggml.merges", .array(.string, [.string("a b"), .string("Ġ ab")])) }
        return w.bytes()
    }

    @Test func errorsForUnknownModelOrPreTokenizer() throws {
        #expect(throws: TokenizerError.unknownModel("rwkv")) {
            try Tokenizer(gguf: try GGUFFile(bytes: Self.tinyVocab(model: "rwkv", pre: nil)))
        }
        #expect(throws: TokenizerError.unknownPreTokenizer("no-such-pre")) {
            try Tokenizer(gguf: try GGUFFile(bytes: Self.tinyVocab(model: "gpt2", pre: "no-such-pre")))
        }
        #expect(throws: TokenizerError.missingMetadata("tokenizer.ggml.merges")) {
            try Tokenizer(gguf: try GGUFFile(bytes: Self.tinyVocab(model: "gpt2", pre: "smollm", merges: false)))
        }
        #expect(throws: TokenizerError.missingMetadata("tokenizer.ggml.model")) {
            try Tokenizer(metadata: [:])
        }
        let message = TokenizerError.unknownPreTokenizer("x").description
        #expect(message.contains("smollm") && message.contains("llama-bpe") && message.contains("qwen2"))
    }

    @Test func tinyBPEVocabulary() throws {
        let t = try Tokenizer(gguf: try GGUFFile(bytes: Self.tinyVocab(model: "gpt2", pre: "gpt-2")))
        #expect(t.encode("ab ab") == [2, 4])
        #expect(t.encode("aab") == [0, 2])
        #expect(t.decode([2, 4]) == "ab ab")
        // Bytes missing from the vocabulary are dropped, as in llama.cpp.
        #expect(t.encode("abc") == [2])
    }

    @Test func concurrentEncodingIsConsistent() async throws {
        guard let t = try ModelLocator.tokenizer() else { return }
        let texts = try Self.corpus()
        let expected = texts.map { t.encode($0, parseSpecial: true) }
        let results = await withTaskGroup(of: (Int, [Int]).self) { group in
            for (i, text) in texts.enumerated() {
                group.addTask { (i, t.encode(text, parseSpecial: true)) }
            }
            var r = [[Int]](repeating: [], count: texts.count)
            for await (i, ids) in group { r[i] = ids }
            return r
        }
        #expect(results == expected)
    }

    // MARK: Speed

    @Test func loadsQuickly() throws {
        guard let file = try ModelLocator.gguf() else { return }
        let clock = ContinuousClock()
        let d = try clock.measure { _ = try Tokenizer(gguf: file) }
        print("tokenizer built from SmolLM2 metadata in \(d)")
        #if !DEBUG
        #expect(d < .seconds(1))
        #endif
    }

    @Test func encodesTenThousandCharactersQuickly() throws {
        guard let t = try ModelLocator.tokenizer() else { return }
        var text = ""
        let parts = try Self.corpus()
        while text.count < 10_000 { text += parts.randomElement()! + " " }
        text = String(text.prefix(10_000))
        _ = t.encode(text)
        let clock = ContinuousClock()
        var best = Duration.seconds(100)
        var ids: [Int] = []
        for _ in 0..<5 {
            let d = clock.measure { ids = t.encode(text, parseSpecial: true) }
            best = min(best, d)
        }
        let decodeTime = clock.measure { _ = t.decode(ids) }
        print("encode 10k characters (\(ids.count) tokens): \(best); decode: \(decodeTime)")
        #if DEBUG
        #expect(best < .seconds(2))
        #else
        #expect(best < .milliseconds(30))
        #endif
    }
}
