import FuzzSupport
import GGUF
@testable import Tokenizer

// The real SmolLM2 tokenizer on arbitrary input. The first byte chooses the operation, the rest is the
// text (invalid UTF-8 is repaired first, as the server's String decoding does) or token ids.
//   bit 0: addSpecial, bit 1: parseSpecial (match `<|im_start|>` and other control tokens),
//   bit 2: decode instead of encode: the rest is little-endian 16-bit token ids (some out of range).
// Properties: ids are in range; decode(encode(s)) == s (special tokens rendered when parsed) unless s
// has a byte the vocabulary has no token for (SmolLM2 lacks some control bytes: they are dropped, as
// llama.cpp drops them); BOS/EOS only wrap the plain encoding; the streaming detokenizer's output
// concatenates to decode's.

let tokenizer: Tokenizer = {
    guard let path = defaultModelPath() else {
        fatalError("the SmolLM2 model is not available: run `swiftlet pull smollm2` or set SWIFTLET_MODEL_PATH")
    }
    do { return try Tokenizer(gguf: try GGUFFile(path: path)) } catch { fatalError("cannot load the tokenizer: \(error)") }
}()

/// Bytes without a byte token: text containing them cannot round-trip.
let untokenizable: Set<UInt8> = Set((0...255).map(UInt8.init).filter { b in
    tokenizer.tokenID(String(decoding: ByteEncoding.utf8ForByte[Int(b)], as: UTF8.self)) == nil
})

func streamed(_ ids: [Int], renderSpecial: Bool) -> String {
    var d = StreamingDetokenizer(tokenizer: tokenizer, renderSpecial: renderSpecial)
    var out = ""
    for id in ids { out += d.append(id) }
    return out + d.flush()
}

runFuzzer { input in
    guard let flags = input.first else { return }
    let rest = UnsafeRawBufferPointer(rebasing: input.dropFirst())
    let addSpecial = flags & 1 != 0, parseSpecial = flags & 2 != 0
    let n = tokenizer.vocabularySize
    if flags & 4 != 0 {
        var ids: [Int] = []
        var i = 0
        while i + 1 < rest.count {
            let v = Int(rest[i]) | Int(rest[i + 1]) << 8
            ids.append(v < 0xF000 ? v : v - 0x10000)  // a few negative ids, the rest up to 61439 (> vocabulary)
            i += 2
        }
        for render in [false, true] {
            let text = tokenizer.decode(ids, renderSpecial: render)
            check(Array(streamed(ids, renderSpecial: render).utf8) == Array(text.utf8), "streaming decode differs from decode")
        }
        return
    }
    let text = String(decoding: rest, as: UTF8.self)
    let plain = tokenizer.encode(text, addSpecial: false, parseSpecial: parseSpecial)
    check(plain.allSatisfy { $0 >= 0 && $0 < n }, "token id out of range")
    let back = tokenizer.decode(plain, renderSpecial: parseSpecial)
    check(Array(back.utf8) == Array(text.utf8) || text.utf8.contains(where: untokenizable.contains), "decode(encode(s)) != s: \(Array(text.utf8)) -> \(plain) -> \(Array(back.utf8))")
    check(Array(streamed(plain, renderSpecial: parseSpecial).utf8) == Array(back.utf8), "streaming decode differs from decode")
    if addSpecial {
        var expected = plain
        if tokenizer.addBOS, let b = tokenizer.bosToken { expected.insert(b, at: 0) }
        if tokenizer.addEOS, let e = tokenizer.eosToken { expected.append(e) }
        check(tokenizer.encode(text, addSpecial: true, parseSpecial: parseSpecial) == expected, "BOS/EOS changed the encoding")
    }
}
