#!/usr/bin/env python3
"""Writes the GGUF fuzz seeds (Corpus/gguf): tiny valid files (every metadata type, tensors, a
byte-level BPE and a SentencePiece tokenizer) and a few hostile ones. No weights: tensors are a few
bytes of pattern."""
import os, struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Corpus", "gguf")
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<B", U64: "<Q", I64: "<q", F64: "<d"}

def s(x):
    b = x.encode() if isinstance(x, str) else x
    return struct.pack("<Q", len(b)) + b

def val(t, v):
    if t == STR: return s(v)
    if t == ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(val(et, i) for i in items)
    return struct.pack(FMT[t], v)

def gguf(kvs, tensors=(), version=3, align=32):
    out = struct.pack("<IIQQ", 0x46554747, version, len(tensors), len(kvs))
    for k, t, v in kvs: out += s(k) + struct.pack("<I", t) + val(t, v)
    off, datas = 0, b""
    for name, dims, typ, data in tensors:
        out += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", typ, off)
        pad = (-len(data)) % align
        datas += data + b"\0" * pad
        off += len(data) + pad
    out += b"\0" * ((-len(out)) % align)
    return out + datas

def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f: f.write(data)

os.makedirs(OUT, exist_ok=True)
every = [("general.architecture", STR, "llama"), ("general.alignment", U32, 64), ("a.u8", U8, 255), ("a.i8", I8, -128),
         ("a.u16", U16, 65535), ("a.i16", I16, -2), ("a.i32", I32, -7), ("a.f32", F32, 1.5), ("a.bool", BOOL, 1),
         ("a.u64", U64, 2**63), ("a.i64", I64, -2**63), ("a.f64", F64, -0.0), ("a.strs", ARR, (STR, ["x", "", "é"])),
         ("a.nested", ARR, (ARR, [(I32, [1, 2]), (F32, [0.5])]))]
tensors = [("w", [4, 2], 0, bytes(range(32))), ("q", [32], 2, bytes(18)), ("h", [8, 1, 1], 1, bytes(16))]
write("every-type", gguf(every, tensors, align=64))
write("v2", gguf([("general.name", STR, "v2")], [("t", [1], 26, b"\1\2\3\4")], version=2))

# Byte-level BPE: GPT-2's byte alphabet, a few merges, ChatML control tokens and one user-defined token.
bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs: bs.append(b); cs.append(256 + n); n += 1
byte_tokens = [chr(c) for _, c in sorted(zip(bs, cs))]
merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r"]
vocab = byte_tokens + ["Ġt", "he", "Ġthe", "in", "Ġa", "er", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool>"]
types = [1] * (len(vocab) - 4) + [3, 3, 3, 4]
bpe = [("tokenizer.ggml.model", STR, "gpt2"), ("tokenizer.ggml.pre", STR, "smollm"), ("tokenizer.ggml.tokens", ARR, (STR, vocab)),
       ("tokenizer.ggml.token_type", ARR, (I32, types)), ("tokenizer.ggml.merges", ARR, (STR, merges)),
       ("tokenizer.ggml.bos_token_id", U32, len(vocab) - 3), ("tokenizer.ggml.eos_token_id", U32, len(vocab) - 2),
       ("tokenizer.ggml.add_bos_token", BOOL, 0), ("tokenizer.chat_template", STR, "{% for m in messages %}{{ m.content }}{% endfor %}")]
write("tokenizer-bpe", gguf(bpe))

# SentencePiece: <unk>, <s>, </s>, byte fallback tokens, a few pieces with scores.
spm_tokens = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)] + ["▁", "▁a", "a", "b", "▁ab", "ab", "é"]
spm_types = [2, 3, 3] + [6] * 256 + [1] * 7
spm = [("tokenizer.ggml.model", STR, "llama"), ("tokenizer.ggml.tokens", ARR, (STR, spm_tokens)),
       ("tokenizer.ggml.scores", ARR, (F32, [0.0] * 259 + [-1.0, -2.0, -3.0, -4.0, -0.5, -2.5, -6.0])),
       ("tokenizer.ggml.token_type", ARR, (I32, spm_types)), ("tokenizer.ggml.unknown_token_id", U32, 0)]
write("tokenizer-spm", gguf(spm))

# Hostile: cut short, absurd counts, too deep arrays, misaligned and out-of-bounds tensors.
good = gguf(every, tensors, align=64)
write("truncated", good[: len(good) // 2])
write("absurd-counts", struct.pack("<IIQQ", 0x46554747, 3, 2**62, 2**63))
deep = (I8, [1])
for _ in range(9): deep = (ARR, [deep])
write("deep-arrays", gguf([("d", ARR, deep)]))
write("misaligned", gguf([], [("t", [2], 0, b"\0" * 8)]).replace(struct.pack("<IQ", 0, 0), struct.pack("<IQ", 0, 3), 1))
write("out-of-bounds", gguf([], [("t", [2**31 - 1, 3], 0, b"\0" * 8)]))
