import Foundation
import GGUF
import Kernels

/// Converts a sentence-transformers BERT model directory (config.json, model.safetensors, vocab.txt,
/// special_tokens_map.json, 1_Pooling/config.json) to GGUF in the layout llama.cpp uses for `bert`, so
/// that `swiftlet pull` can serve embedding models published that way. The same conversion as
/// scripts/convert-sentence-transformer (gguf-py), to the byte: matrices and token embeddings in F16,
/// norms, biases and position/type embeddings in F32; the vocabulary with a phantom space.
public enum SentenceTransformerConverter {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public static func convert(directory: URL, to output: URL, name: String) throws {
        func json(_ path: String) throws -> [String: Any] {
            let url = directory.appendingPathComponent(path)
            guard let data = FileManager.default.contents(atPath: url.path),
                  let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw Failure(description: "cannot read \(url.path) as a JSON object")
            }
            return object
        }
        let cfg = try json("config.json")
        guard cfg["model_type"] as? String == "bert" else {
            throw Failure(description: "model_type \(cfg["model_type"] ?? "nil"): only bert is supported")
        }
        func int(_ key: String) throws -> Int {
            guard let v = cfg[key] as? Int, v > 0, v < 1 << 24 else { throw Failure(description: "config.json: bad \(key)") }
            return v
        }
        let layers = try int("num_hidden_layers"), width = try int("hidden_size")
        let weights = try SafeTensors(url: directory.appendingPathComponent("model.safetensors"))

        var w = GGUFWriter()
        func u32(_ k: String, _ v: Int) { w.add(k, .uint32(UInt32(v))) }
        w.add("general.architecture", .string("bert"))
        w.add("general.name", .string(name))
        u32("bert.context_length", try int("max_position_embeddings"))
        u32("bert.embedding_length", width)
        u32("bert.feed_forward_length", try int("intermediate_size"))
        u32("bert.block_count", layers)
        u32("bert.attention.head_count", try int("num_attention_heads"))
        w.add("bert.attention.layer_norm_epsilon", .float32(Float((cfg["layer_norm_eps"] as? Double) ?? 1e-12)))
        w.add("bert.attention.causal", .bool(false))
        u32("bert.pooling_type", try pooling(directory))
        u32("general.file_type", 1)  // mostly F16

        let vocab = try String(contentsOf: directory.appendingPathComponent("vocab.txt"), encoding: .utf8)
        var tokens = vocab.components(separatedBy: "\n")
        if tokens.last == "" { tokens.removeLast() }
        let specialMap = try json("special_tokens_map.json")
        var specials: [String: String] = [:]
        for (k, v) in specialMap {
            if let s = v as? String { specials[k] = s } else if let d = v as? [String: Any], let s = d["content"] as? String { specials[k] = s }
        }
        let specialTexts = Set(specials.values)
        var texts: [GGUFValue] = [], types: [GGUFValue] = []
        var ids: [String: Int] = [:]
        for (i, t) in tokens.enumerated() {
            ids[t] = ids[t] ?? i
            if specialTexts.contains(t) {
                texts.append(.string(t))
                types.append(.int32(t == specials["unk_token"] ? 2 : 3))  // unknown, control
            } else if t.utf8.starts(with: "[unused".utf8), t.utf8.last == UInt8(ascii: "]") {
                texts.append(.string(t))
                types.append(.int32(5))  // unused
            } else if t.utf8.starts(with: "##".utf8) {
                // Bytes, not characters: "##" before a combining mark is not two "#" characters.
                texts.append(.string(String(decoding: t.utf8.dropFirst(2), as: UTF8.self)))
                types.append(.int32(1))
            } else {
                texts.append(.string("\u{2581}" + t))
                types.append(.int32(1))
            }
        }
        func special(_ kind: String) throws -> Int {
            guard let text = specials[kind + "_token"], let id = ids[text] else {
                throw Failure(description: "special_tokens_map.json: no \(kind)_token in the vocabulary")
            }
            return id
        }
        w.add("tokenizer.ggml.model", .string("bert"))
        w.add("tokenizer.ggml.tokens", .array(.string, texts))
        w.add("tokenizer.ggml.token_type", .array(.int32, types))
        u32("tokenizer.ggml.token_type_count", (cfg["type_vocab_size"] as? Int) ?? 2)
        u32("tokenizer.ggml.unknown_token_id", try special("unk"))
        u32("tokenizer.ggml.seperator_token_id", try special("sep"))
        u32("tokenizer.ggml.padding_token_id", try special("pad"))
        u32("tokenizer.ggml.bos_token_id", try special("cls"))
        u32("tokenizer.ggml.mask_token_id", try special("mask"))
        w.add("tokenizer.ggml.add_bos_token", .bool(true))
        w.add("tokenizer.ggml.add_sep_token", .bool(true))

        var names: [(String, String)] = [
            ("embeddings.word_embeddings.weight", "token_embd.weight"),
            ("embeddings.position_embeddings.weight", "position_embd.weight"),
            ("embeddings.token_type_embeddings.weight", "token_types.weight"),
            ("embeddings.LayerNorm.weight", "token_embd_norm.weight"),
            ("embeddings.LayerNorm.bias", "token_embd_norm.bias"),
        ]
        let perLayer = [
            ("attention.self.query", "attn_q"), ("attention.self.key", "attn_k"), ("attention.self.value", "attn_v"),
            ("attention.output.dense", "attn_output"), ("attention.output.LayerNorm", "attn_output_norm"),
            ("intermediate.dense", "ffn_up"), ("output.dense", "ffn_down"), ("output.LayerNorm", "layer_output_norm"),
        ]
        for i in 0..<layers {
            for (src, dst) in perLayer {
                for part in ["weight", "bias"] { names.append(("encoder.layer.\(i).\(src).\(part)", "blk.\(i).\(dst).\(part)")) }
            }
        }
        for (src, dst) in names {
            let t = try weights.tensor(src)
            let half = t.shape.count == 2 && (dst.hasPrefix("blk.") || dst == "token_embd.weight")
            var data = [UInt8](repeating: 0, count: t.values.count * (half ? 2 : 4))
            data.withUnsafeMutableBytes { out in
                t.values.withUnsafeBufferPointer { v in
                    if half {
                        Ops.toHalf(v.baseAddress!, out.bindMemory(to: UInt16.self).baseAddress!, count: v.count)
                    } else {
                        out.copyMemory(from: UnsafeRawBufferPointer(v))
                    }
                }
            }
            w.add(tensor: .init(name: dst, shape: t.shape.reversed(), type: half ? .f16 : .f32, data: data))
        }
        // The caller writes to a partial file and renames it once checked (ModelStore.pull).
        guard FileManager.default.createFile(atPath: output.path, contents: Data(w.bytes())) else {
            throw Failure(description: "cannot write \(output.path)")
        }
    }

    /// GGUF pooling_type from 1_Pooling/config.json: 1 mean, 2 CLS, 3 last token (CLS without one).
    static func pooling(_ directory: URL) throws -> Int {
        let url = directory.appendingPathComponent("1_Pooling/config.json")
        guard let data = FileManager.default.contents(atPath: url.path) else { return 2 }
        guard let p = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw Failure(description: "\(url.path) is not a JSON object")
        }
        if p["pooling_mode_mean_tokens"] as? Bool == true { return 1 }
        if p["pooling_mode_cls_token"] as? Bool == true { return 2 }
        if p["pooling_mode_lasttoken"] as? Bool == true { return 3 }
        throw Failure(description: "unsupported pooling in \(url.path)")
    }
}

/// The float tensors of a .safetensors file: an 8-byte header length, a JSON header, then raw data.
struct SafeTensors {
    struct Tensor {
        var shape: [Int]
        var values: [Float]
    }

    let data: Data
    let header: [String: Any]
    let base: Int

    init(url: URL) throws {
        data = try Data(contentsOf: url, options: .alwaysMapped)
        guard data.count >= 8 else { throw SentenceTransformerConverter.Failure(description: "\(url.path) is too short") }
        let n = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        guard n > 0, n <= data.count - 8,
              let h = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<8 + n)) as? [String: Any] else {
            throw SentenceTransformerConverter.Failure(description: "\(url.path) has no valid safetensors header")
        }
        header = h
        base = 8 + n
    }

    func tensor(_ name: String) throws -> Tensor {
        guard let info = (header[name] ?? header["bert." + name]) as? [String: Any], let dtype = info["dtype"] as? String,
              let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int], offsets.count == 2 else {
            throw SentenceTransformerConverter.Failure(description: "model.safetensors has no tensor \(name)")
        }
        let count = shape.reduce(1, *), start = base + offsets[0], end = base + offsets[1]
        let size = ["F32": 4, "F16": 2, "BF16": 2][dtype]
        guard let size, start >= base, end <= data.count, end - start == count * size else {
            throw SentenceTransformerConverter.Failure(description: "tensor \(name): unsupported dtype \(dtype) or bad offsets")
        }
        var values = [Float](repeating: 0, count: count)
        data.withUnsafeBytes { raw in
            let p = raw.baseAddress! + start
            for i in 0..<count {
                switch dtype {
                case "F32": values[i] = Float(bitPattern: p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self).littleEndian)
                case "BF16": values[i] = Float(bitPattern: UInt32(p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian) << 16)
                default: values[i] = Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian))
                }
            }
        }
        return Tensor(shape: shape, values: values)
    }
}
