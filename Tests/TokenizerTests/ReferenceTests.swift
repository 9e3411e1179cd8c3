import GGUF
import Testing
import Tokenizer

/// Token ids must equal llama.cpp's (fixtures made by scripts/fixtures/make_tokenizer_fixtures.py).
@Suite struct ReferenceTests {
    static let bpeVariants = ["smollm", "llama-bpe", "qwen2", "gpt-2", "default"]
    static let spmVariants = ["spm", "spm-noprefix-eos"]

    @Test(arguments: bpeVariants)
    func byteLevelBPEMatchesLlamaCpp(_ name: String) throws {
        guard let file = try ModelLocator.gguf() else { return }
        let fixture = try Fixtures.bpe.get()
        let variant = try #require(fixture.variants.first { $0.name == name })
        let tokenizer = try Tokenizer(metadata: applying(variant.overrides, to: file.metadata))
        if case .bytePairEncoding = tokenizer.model {} else { Issue.record("expected a BPE model") }
        check(tokenizer, variant)
    }

    @Test(arguments: spmVariants)
    func sentencePieceMatchesLlamaCpp(_ name: String) throws {
        let fixture = try Fixtures.spm.get()
        let variant = try #require(fixture.variants.first { $0.name == name })
        // Built as a GGUF file in memory, the way the fixture script gave it to llama.cpp.
        var writer = GGUFWriter()
        for (k, v) in applying(variant.overrides, to: spmMetadata(fixture.vocabulary)).sorted(by: { $0.key < $1.key }) {
            writer.add(k, v)
        }
        let tokenizer = try Tokenizer(gguf: try GGUFFile(bytes: writer.bytes()))
        #expect(tokenizer.model == .sentencePiece)
        check(tokenizer, variant)
    }

    func check(_ t: Tokenizer, _ v: Variant, sourceLocation: SourceLocation = #_sourceLocation) {
        let r = v.reference
        #expect(t.vocabularySize == r.vocabularySize, sourceLocation: sourceLocation)
        #expect(t.bosToken == r.bos, sourceLocation: sourceLocation)
        #expect(t.eosToken == r.eos, sourceLocation: sourceLocation)
        #expect(t.addBOS == r.addBOS, sourceLocation: sourceLocation)
        #expect(t.addEOS == r.addEOS, sourceLocation: sourceLocation)
        #expect(t.endOfGenerationTokens == Set(r.endOfGeneration), sourceLocation: sourceLocation)
        if let eot = t.eotToken { #expect(t.endOfGenerationTokens.contains(eot), sourceLocation: sourceLocation) }
        #expect(pieceHash(t, renderSpecial: false) == r.pieceHashes["plain"], "token pieces (plain)",
                sourceLocation: sourceLocation)
        #expect(pieceHash(t, renderSpecial: true) == r.pieceHashes["renderSpecial"], "token pieces (special)",
                sourceLocation: sourceLocation)
        #expect(v.cases.count > 100, sourceLocation: sourceLocation)
        var failures = 0
        for c in v.cases {
            let ids = t.encode(c.text, addSpecial: c.addSpecial, parseSpecial: c.parseSpecial)
            if ids != c.ids {
                failures += 1
                let firstDiff = zip(ids, c.ids).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(ids.count, c.ids.count)
                let show = { (x: [Int]) in x.dropFirst(max(0, firstDiff - 2)).prefix(8).map { "\($0):\(t.tokenText($0).debugDescription)" } }
                Issue.record("""
                    [\(v.name)] \(c.text.prefix(60).debugDescription) addSpecial=\(c.addSpecial) parseSpecial=\(c.parseSpecial)
                      first difference at \(firstDiff): got \(show(ids))
                      expected \(show(c.ids))
                    """, sourceLocation: sourceLocation)
                if failures > 10 { return }
            }
        }
    }
}
