import FuzzSupport
import GGUF
import Tokenizer

// Hostile GGUF files: parsing either throws or yields a file whose every accessor and tensor byte is
// readable (AddressSanitizer checks the reads), that GGUFWriter writes back, and that reads back to
// the same bytes. A file with tokenizer metadata also builds (or refuses) a tokenizer.

func writer(_ f: GGUFFile) -> GGUFWriter {
    var w = GGUFWriter(version: f.version)
    w.alignment = f.alignment
    for k in f.metadataKeys { w.add(k, f.metadata[k]!) }
    for t in f.tensors {
        let data = f.tensorData(t)
        check(data.count == t.byteCount, "tensor \(t.name): \(data.count) bytes for \(t.byteCount)")
        w.add(tensor: .init(name: t.name, shape: t.shape, type: t.type, data: Array(data)))
    }
    return w
}

runFuzzer { input in
    guard let f = try? GGUFFile(bytes: Array(input)) else { return }
    check(f.metadataKeys.count == f.metadata.count, "keys and metadata differ")
    check(f.dataOffset % f.alignment == 0, "data offset \(f.dataOffset) not aligned to \(f.alignment)")
    for k in f.metadataKeys {
        _ = try? f.string(k); _ = try? f.int(k); _ = try? f.double(k); _ = try? f.bool(k)
        _ = try? f.stringArray(k); _ = try? f.intArray(k); _ = try? f.floatArray(k)
        _ = f.metadata[k]!.description
    }
    for t in f.tensors {
        check(f.tensorInfo(t.name)?.offset == t.offset, "tensor index of \(t.name)")
        check(t.offset + t.byteCount <= f.fileSize - f.dataOffset, "tensor \(t.name) past the end")
        _ = t.elementCount
        _ = t.rowCount
    }
    // Write back and read again: the same file.
    let written = writer(f).bytes()
    guard let again = try? GGUFFile(bytes: written) else {
        fatalError("GGUFWriter's copy of a valid file does not parse")
    }
    check(writer(again).bytes() == written, "round trip changed the file")

    if f.metadata["tokenizer.ggml.model"] != nil, let tok = try? Tokenizer(gguf: f) {
        for text in ["Hello, world! 123", " <|im_start|>user\nhé\u{1F600}  x", ""] {
            let ids = tok.encode(text, addSpecial: true, parseSpecial: true)
            check(ids.allSatisfy { $0 >= 0 && $0 < tok.vocabularySize }, "token id out of range")
            _ = tok.decode(ids, renderSpecial: true)
        }
        _ = tok.decode(Array(-2..<min(tok.vocabularySize + 2, 300)))
    }
}
