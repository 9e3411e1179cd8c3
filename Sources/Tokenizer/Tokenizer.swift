import GGUF

/// Attributes of a vocabulary entry (from `tokenizer.ggml.token_type`, plus llama.cpp's overrides:
/// end-of-turn / FIM-looking tokens become control tokens).
public struct TokenAttributes: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let undefined = TokenAttributes(rawValue: 1 << 0)
    public static let unknown = TokenAttributes(rawValue: 1 << 1)
    public static let unused = TokenAttributes(rawValue: 1 << 2)
    public static let normal = TokenAttributes(rawValue: 1 << 3)
    public static let control = TokenAttributes(rawValue: 1 << 4)
    public static let userDefined = TokenAttributes(rawValue: 1 << 5)
    public static let byte = TokenAttributes(rawValue: 1 << 6)

    /// Type numbers of `tokenizer.ggml.token_type`.
    init(tokenType: Int) {
        switch tokenType {
        case 1: self = .normal
        case 2: self = .unknown
        case 3: self = .control
        case 4: self = .userDefined
        case 5: self = .unused
        case 6: self = .byte
        default: self = .undefined
        }
    }
}

/// Text ↔ token ids for the vocabularies stored in GGUF files, matching llama.cpp's tokenizer.
///
/// Supported: byte-level BPE (`tokenizer.ggml.model = gpt2`) with the pre-tokenizers listed in
/// `supportedPreTokenizers`, and SentencePiece BPE (`tokenizer.ggml.model = llama`).
public final class Tokenizer: Sendable {
    public enum Model: Sendable, Equatable {
        case bytePairEncoding(PreTokenizerKind)
        case sentencePiece
        /// BERT's WordPiece: [CLS] pieces [SEP].
        case wordPiece
    }

    /// `tokenizer.ggml.pre` names accepted for byte-level BPE, with the matcher and the flags llama.cpp
    /// gives each (`ignore_merges`, default of `add_bos`).
    static let preTokenizers: [String: (kind: PreTokenizerKind, ignoreMerges: Bool, addBOS: Bool)] = {
        var t: [String: (PreTokenizerKind, Bool, Bool)] = ["default": (.default, false, false)]
        for n in ["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                  "jina-v5-nano"] { t[n] = (.llama3, true, true) }
        for n in ["dbrx", "smaug-bpe"] { t[n] = (.llama3, false, false) }
        for n in ["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b", "mellum2"] {
            t[n] = (.smollm, false, false)
        }
        for n in ["gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais", "trillion", "granite-docling", "exaone4",
                  "gigachat", "a.x-4.0", "mellum"] { t[n] = (.gpt2, false, false) }
        for n in ["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "stablelm2", "megrez", "hunyuan", "solar-open"] {
            t[n] = (.qwen2, false, false)
        }
        return t.mapValues { (kind: $0.0, ignoreMerges: $0.1, addBOS: $0.2) }
    }()

    public static var supportedPreTokenizers: [String] { Array(preTokenizers.keys) }

    public let model: Model
    /// `tokenizer.ggml.pre` as stored (nil when absent).
    public let preTokenizerName: String?

    let tokens: [String]
    let attributes: [TokenAttributes]
    let textToID: [[UInt8]: Int]
    /// Bytes of each token rendered with special tokens shown (llama.cpp's token_to_piece(special: true)).
    let pieces: [[UInt8]]
    /// Tokens matched as whole units in text: control, user-defined and unknown, longest first.
    let specialTokens: [Int]
    /// Indices into `specialTokens` grouped by first byte.
    let specialByFirstByte: [[Int]]

    public let bosToken: Int?
    public let eosToken: Int?
    public let eotToken: Int?
    public let unknownToken: Int?
    public let paddingToken: Int?
    /// Tokens that end generation (llama.cpp's is_eog): eos, eot, eom, and end-of-turn/FIM control tokens.
    public let endOfGenerationTokens: Set<Int>
    /// Whether `encode(addSpecial: true)` prepends `bosToken` / appends `eosToken`.
    public let addBOS: Bool
    public let addEOS: Bool
    /// SentencePiece: a space is put before text that starts the input or follows a special token.
    public let addSpacePrefix: Bool

    let bpe: BPEModel?
    let spm: SentencePieceModel?
    let wpm: WordPieceModel?
    let pre: PreTokenizer?

    public convenience init(gguf: GGUFFile) throws {
        try self.init(metadata: gguf.metadata)
    }

    /// Builds the tokenizer from GGUF metadata (`tokenizer.ggml.*` keys).
    public init(metadata md: [String: GGUFValue]) throws {
        func string(_ k: String) throws -> String? {
            guard let v = md[k] else { return nil }
            guard let s = v.stringValue else { throw TokenizerError.wrongMetadataType(key: k, expected: "a string") }
            return s
        }
        func bool(_ k: String) throws -> Bool? {
            guard let v = md[k] else { return nil }
            guard let b = v.boolValue else { throw TokenizerError.wrongMetadataType(key: k, expected: "a bool") }
            return b
        }
        func int(_ k: String) throws -> Int? {
            guard let v = md[k] else { return nil }
            guard let i = v.intValue else { throw TokenizerError.wrongMetadataType(key: k, expected: "an integer") }
            return i
        }
        func array(_ k: String) throws -> [GGUFValue]? {
            guard let v = md[k] else { return nil }
            guard let a = v.arrayValue else { throw TokenizerError.wrongMetadataType(key: k, expected: "an array") }
            return a
        }

        guard let modelName = try string("tokenizer.ggml.model") else {
            throw TokenizerError.missingMetadata("tokenizer.ggml.model")
        }
        let preName = try string("tokenizer.ggml.pre")
        preTokenizerName = preName

        // Model and its defaults (llama.cpp's, including its legacy GPT-2 default ids).
        var bos: Int?, eos: Int?, unk: Int?
        var addBOS: Bool, addEOS = false, addSpacePrefix: Bool
        var preInfo: (kind: PreTokenizerKind, ignoreMerges: Bool, addBOS: Bool)?
        switch modelName {
        case "gpt2":
            let name = preName ?? "default"
            guard let info = Self.preTokenizers[name.isEmpty ? "default" : name] else {
                throw TokenizerError.unknownPreTokenizer(name)
            }
            preInfo = info
            model = .bytePairEncoding(info.kind)
            bos = 11; eos = 11; unk = nil
            addBOS = info.addBOS
            addSpacePrefix = false
        case "llama":
            model = .sentencePiece
            bos = 1; eos = 2; unk = 0
            addBOS = true
            addSpacePrefix = true
        case "bert":
            model = .wordPiece
            bos = 101; eos = 102; unk = 100
            addBOS = true
            addEOS = true
            addSpacePrefix = false
        default:
            throw TokenizerError.unknownModel(modelName)
        }

        // Vocabulary.
        guard let tokenValues = try array("tokenizer.ggml.tokens") else {
            throw TokenizerError.missingMetadata("tokenizer.ggml.tokens")
        }
        var toks: [String] = []
        toks.reserveCapacity(tokenValues.count)
        for (i, v) in tokenValues.enumerated() {
            guard let s = v.stringValue else {
                throw TokenizerError.wrongMetadataType(key: "tokenizer.ggml.tokens", expected: "an array of strings")
            }
            toks.append(s.isEmpty ? "[EMPTY_\(i)]" : s)
        }
        let n = toks.count
        var map: [[UInt8]: Int] = [:]
        map.reserveCapacity(n)
        for (i, t) in toks.enumerated() { map[Array(t.utf8)] = i }

        var scores = [Float](repeating: 0, count: n)
        if let sv = try array("tokenizer.ggml.scores") {
            guard sv.count >= n else {
                throw TokenizerError.inconsistentMetadata("tokenizer.ggml.scores has \(sv.count) entries for \(n) tokens")
            }
            for i in 0..<n {
                guard let d = sv[i].doubleValue else {
                    throw TokenizerError.wrongMetadataType(key: "tokenizer.ggml.scores", expected: "an array of numbers")
                }
                scores[i] = Float(d)
            }
        }
        var attrs = [TokenAttributes](repeating: .normal, count: n)
        if let tv = try array("tokenizer.ggml.token_type") {
            guard tv.count >= n else {
                throw TokenizerError.inconsistentMetadata("tokenizer.ggml.token_type has \(tv.count) entries for \(n) tokens")
            }
            for i in 0..<n {
                guard let t = tv[i].intValue else {
                    throw TokenizerError.wrongMetadataType(key: "tokenizer.ggml.token_type", expected: "an array of integers")
                }
                attrs[i] = TokenAttributes(tokenType: t)
            }
        }

        // Special token ids: defaults out of range are dropped; bad ids in the file keep the default.
        func special(_ key: String, _ def: Int?) throws -> Int? {
            var id = def
            if let d = id, d >= n { id = nil }
            if let v = try int("tokenizer.ggml." + key), v >= 0, v < n { id = v }
            return id
        }
        bos = try special("bos_token_id", bos)
        eos = try special("eos_token_id", eos)
        unk = try special("unknown_token_id", unk)
        let pad = try special("padding_token_id", nil)
        var eot = try special("eot_token_id", nil)
        var eom = try special("eom_token_id", nil)
        var fimPre = try special("fim_pre_token_id", nil) ?? special("prefix_token_id", nil)
        var fimSuf = try special("fim_suf_token_id", nil) ?? special("suffix_token_id", nil)
        var fimMid = try special("fim_mid_token_id", nil) ?? special("middle_token_id", nil)
        var fimPad = try special("fim_pad_token_id", nil)
        var fimRep = try special("fim_rep_token_id", nil)
        var fimSep = try special("fim_sep_token_id", nil)
        if let b = try bool("tokenizer.ggml.add_bos_token") { addBOS = b }
        if let b = try bool("tokenizer.ggml.add_eos_token") { addEOS = b }
        if let b = try bool("tokenizer.ggml.add_space_prefix") { addSpacePrefix = b }
        if model == .wordPiece {
            // [CLS] is BOS (older files name it cls_token_id); [SEP] ends every input unless add_sep_token is false.
            bos = try special("cls_token_id", bos)
            eos = try special("seperator_token_id", eos)
            addEOS = try bool("tokenizer.ggml.add_sep_token") ?? true
        }

        // Auto-detection by text, as llama.cpp does; detected tokens become control tokens.
        // (llama.cpp takes whichever candidate its hash map yields first; we prefer the order below.)
        func detect(_ current: Int?, _ names: [String]) -> Int? {
            if current != nil { return current }
            for name in names {
                if let id = map[Array(name.utf8)] {
                    attrs[id].insert(.control)
                    return id
                }
            }
            return nil
        }
        eot = detect(eot, ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
                           "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"])
        eom = detect(eom, ["<|eom_id|>"])
        fimPre = detect(fimPre, ["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
                                 "<|code_prefix|>", "<|prefix|>"])
        fimSuf = detect(fimSuf, ["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
                                 "<|code_suffix|>", "<|suffix|>"])
        fimMid = detect(fimMid, ["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
                                 "<|code_middle|>", "<|middle|>"])
        fimPad = detect(fimPad, ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"])
        fimRep = detect(fimRep, ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"])
        fimSep = detect(fimSep, ["<|file_sep|>"])
        _ = (fimPre, fimSuf, fimMid)

        for i in 0..<n where attrs[i].contains(.control) && toks[i].contains("unused") {
            attrs[i].insert(.unused)
        }

        var eog = Set<Int>()
        for id in [fimPad, fimRep, fimSep] { if let id { eog.insert(id) } }
        for name in ["<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
                     "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
                     "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
                     "<｜end▁of▁sentence｜>", "[e~["] {
            if let id = map[Array(name.utf8)] {
                eog.insert(id)
                attrs[id].insert(.control)
            }
        }
        for name in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let id = map[Array(name.utf8)] { attrs[id] = .userDefined }
        }
        for id in [eos, eot, eom] { if let id { eog.insert(id) } }
        let eogTexts = Set(eog.map { toks[$0] })
        if let endID = map[Array("<|end|>".utf8)], eog.contains(endID),
           (eogTexts.contains("<|return|>") && eogTexts.contains("<|call|>"))
            || (eogTexts.contains("<|calls|>") && eogTexts.contains("<|flush|>")) {
            eog.remove(endID)
            attrs[endID] = .userDefined
        }
        if let sID = map[Array("</s>".utf8)], eog.contains(sID),
           eogTexts.contains("<|tool_response>") || eogTexts.contains("<|plamo:eos|>") {
            eog.remove(sID)
            attrs[sID] = .normal
        }

        // Special-token cache, longest first (stable on ties).
        let specialMask: TokenAttributes = [.control, .userDefined, .unknown]
        let specials = (0..<n).filter { !attrs[$0].isDisjoint(with: specialMask) }
            .sorted { (toks[$0].utf8.count, -$0) > (toks[$1].utf8.count, -$1) }
        var byFirst = [[Int]](repeating: [], count: 256)
        for (k, id) in specials.enumerated() {
            if let f = toks[id].utf8.first { byFirst[Int(f)].append(k) }
        }

        // Rendered pieces.
        let isSPM = model == .sentencePiece || model == .wordPiece
        var pcs: [[UInt8]] = []
        pcs.reserveCapacity(n)
        for i in 0..<n {
            pcs.append(Self.renderPiece(toks[i], attrs[i], sentencePiece: isSPM))
        }

        // Model-specific state.
        switch model {
        case .bytePairEncoding(let kind):
            guard let mv = try array("tokenizer.ggml.merges") else {
                throw TokenizerError.missingMetadata("tokenizer.ggml.merges")
            }
            let merges = try mv.map {
                guard let s = $0.stringValue else {
                    throw TokenizerError.wrongMetadataType(key: "tokenizer.ggml.merges", expected: "an array of strings")
                }
                return s
            }
            bpe = BPEModel(tokens: toks, textToID: map, merges: merges, ignoreMerges: preInfo!.ignoreMerges)
            spm = nil
            wpm = nil
            pre = PreTokenizer(kind: kind)
        case .sentencePiece:
            bpe = nil
            spm = SentencePieceModel(tokens: toks, scores: scores, textToID: map, unknownToken: unk)
            wpm = nil
            pre = nil
        case .wordPiece:
            bpe = nil
            spm = nil
            wpm = WordPieceModel(tokens: toks, textToID: map, unknown: unk)
            pre = nil
        }

        tokens = toks
        attributes = attrs
        textToID = map
        pieces = pcs
        specialTokens = specials
        specialByFirstByte = byFirst
        bosToken = bos
        eosToken = eos
        eotToken = eot
        unknownToken = unk
        paddingToken = pad
        endOfGenerationTokens = eog
        self.addBOS = addBOS
        self.addEOS = addEOS
        self.addSpacePrefix = addSpacePrefix
    }

    static func renderPiece(_ text: String, _ attr: TokenAttributes, sentencePiece: Bool) -> [UInt8] {
        if !attr.isDisjoint(with: [.control, .unknown, .userDefined]) { return Array(text.utf8) }
        if attr.contains(.normal) {
            if sentencePiece {
                var out: [UInt8] = []
                out.reserveCapacity(text.utf8.count)
                for s in text.unicodeScalars {
                    if s == "\u{2581}" { out.append(0x20) } else { out.append(contentsOf: String(s).utf8) }
                }
                return out
            }
            if let raw = ByteEncoding.decode(text) { return raw }
            // Characters outside the byte map are kept as their own UTF-8 (llama.cpp inserts a marker).
            var out: [UInt8] = []
            for s in text.unicodeScalars {
                let v = Int(s.value)
                if v < ByteEncoding.byteForScalar.count, ByteEncoding.byteForScalar[v] >= 0 {
                    out.append(UInt8(ByteEncoding.byteForScalar[v]))
                } else {
                    out.append(contentsOf: String(s).utf8)
                }
            }
            return out
        }
        if attr.contains(.byte) {
            let u = Array(text.utf8)
            if u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E,
               let b = UInt8(String(decoding: u[3...4], as: UTF8.self), radix: 16) {
                return [b]
            }
            return Array(text.utf8)
        }
        return []  // unused / undefined tokens render as nothing
    }

    // MARK: Vocabulary

    public var vocabularySize: Int { tokens.count }

    /// Raw vocabulary string of a token (byte-level BPE tokens are in GPT-2's byte encoding).
    public func tokenText(_ id: Int) -> String {
        tokens.indices.contains(id) ? tokens[id] : ""
    }

    /// Exact vocabulary lookup (byte-exact, no normalisation).
    public func tokenID(_ text: String) -> Int? {
        textToID[Array(text.utf8)]
    }

    public func attributes(of id: Int) -> TokenAttributes {
        attributes.indices.contains(id) ? attributes[id] : []
    }

    /// True for control and unknown tokens (those rendered as empty text unless `renderSpecial`).
    public func isSpecial(_ id: Int) -> Bool {
        !attributes(of: id).isDisjoint(with: [.control, .unknown])
    }

    public func isEndOfGeneration(_ id: Int) -> Bool { endOfGenerationTokens.contains(id) }

    /// The bytes a token stands for: decoded bytes for normal and byte tokens, the token text for
    /// control / user-defined / unknown tokens, nothing for unused ones. Not necessarily valid UTF-8.
    public func tokenBytes(_ id: Int) -> [UInt8] {
        pieces.indices.contains(id) ? pieces[id] : []
    }

    /// Bytes of a token as `decode` renders it (empty for control / unknown tokens unless `renderSpecial`;
    /// without SentencePiece's removal of the leading space at the start of a text).
    public func tokenPiece(_ id: Int, renderSpecial: Bool = false) -> [UInt8] {
        piece(id, renderSpecial: renderSpecial)
    }

    func piece(_ id: Int, renderSpecial: Bool) -> [UInt8] {
        guard pieces.indices.contains(id) else { return [] }
        if !renderSpecial && !attributes[id].isDisjoint(with: [.control, .unknown]) { return [] }
        return pieces[id]
    }

    /// SentencePiece vocabularies drop the space `addSpacePrefix` put before the first word.
    var stripsLeadingSpace: Bool { model == .sentencePiece && addSpacePrefix }

    // MARK: Decoding

    /// Text of a token sequence. Control tokens render as empty text unless `renderSpecial`;
    /// invalid UTF-8 (a sequence cut in the middle of a character) becomes U+FFFD.
    public func decode(_ ids: [Int], renderSpecial: Bool = false) -> String {
        String(decoding: decodeBytes(ids, renderSpecial: renderSpecial), as: UTF8.self)
    }

    /// Bytes of a token sequence, as `decode` would render them before UTF-8 decoding.
    public func decodeBytes(_ ids: [Int], renderSpecial: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        var strip = stripsLeadingSpace
        for id in ids {
            let p = piece(id, renderSpecial: renderSpecial)
            if p.isEmpty { continue }
            if strip {
                strip = false
                if p[0] == 0x20 {
                    out.append(contentsOf: p.dropFirst())
                    continue
                }
            }
            out.append(contentsOf: p)
        }
        return out
    }

    // MARK: Encoding

    enum Fragment {
        case text(Range<Int>)
        case token(Int)
    }

    /// Token ids for `text`.
    /// - Parameters:
    ///   - addSpecial: add BOS / EOS when the vocabulary asks for them (`tokenizer.ggml.add_bos_token`, …).
    ///   - parseSpecial: match control and unknown tokens written in the text (like `<|im_start|>`) as
    ///     single tokens. User-defined tokens are always matched, as in llama.cpp.
    public func encode(_ text: String, addSpecial: Bool = true, parseSpecial: Bool = false) -> [Int] {
        let bytes = Array(text.utf8)
        var out: [Int] = []
        out.reserveCapacity(bytes.count / 3 + 4)
        if addSpecial && addBOS, let b = bosToken { out.append(b) }
        let fragments = bytes.isEmpty ? [] : partition(bytes, parseSpecial: parseSpecial)
        bytes.withUnsafeBufferPointer { buf in
            switch model {
            case .bytePairEncoding:
                var scratch = BPEModel.Scratch()
                for f in fragments {
                    switch f {
                    case .text(let r): encodeBPE(UnsafeBufferPointer(rebasing: buf[r]), scratch: &scratch, into: &out)
                    case .token(let id): out.append(id)
                    }
                }
            case .sentencePiece:
                var prevSpecial = true
                for f in fragments {
                    switch f {
                    case .text(let r):
                        var t: [UInt8] = []
                        t.reserveCapacity(r.count + 8)
                        if addSpacePrefix && prevSpecial { t.append(contentsOf: [0xE2, 0x96, 0x81]) }
                        for b in buf[r] {
                            if b == 0x20 { t.append(contentsOf: [0xE2, 0x96, 0x81]) } else { t.append(b) }
                        }
                        spm!.encode(t, textToID: textToID, into: &out)
                        prevSpecial = false
                    case .token(let id):
                        out.append(id)
                        prevSpecial = true
                    }
                }
            case .wordPiece:
                for f in fragments {
                    switch f {
                    case .text(let r): wpm!.encode(String(decoding: buf[r], as: UTF8.self), into: &out)
                    case .token(let id): out.append(id)
                    }
                }
            }
        }
        if addSpecial && addEOS, let e = eosToken { out.append(e) }
        return out
    }

    /// Splits text around special tokens: each special token (longest first) splits every text fragment
    /// at all its occurrences, left to right (llama.cpp's tokenizer_st_partition).
    func partition(_ bytes: [UInt8], parseSpecial: Bool) -> [Fragment] {
        let n = bytes.count
        // Which special tokens occur anywhere at all (the rest cannot occur in any fragment).
        var occurring: [Int] = []
        bytes.withUnsafeBufferPointer { buf in
            var seen = Set<Int>()
            for i in 0..<n {
                let cands = specialByFirstByte[Int(buf[i])]
                if cands.isEmpty { continue }
                for k in cands where !seen.contains(k) {
                    let id = specialTokens[k]
                    if !parseSpecial && !attributes[id].isDisjoint(with: [.control, .unknown]) { continue }
                    if Self.matches(buf, at: i, tokens[id].utf8) { seen.insert(k) }
                }
            }
            occurring = seen.sorted()
        }
        var frags: [Fragment] = [.text(0..<n)]
        if occurring.isEmpty { return frags }
        bytes.withUnsafeBufferPointer { buf in
            for k in occurring {
                let id = specialTokens[k]
                let pat = Array(tokens[id].utf8)
                var next: [Fragment] = []
                next.reserveCapacity(frags.count + 4)
                for f in frags {
                    guard case .text(let r) = f else {
                        next.append(f)
                        continue
                    }
                    var lo = r.lowerBound
                    var i = r.lowerBound
                    while i + pat.count <= r.upperBound {
                        if buf[i] == pat[0] && Self.matches(buf, at: i, pat) {
                            if i > lo { next.append(.text(lo..<i)) }
                            next.append(.token(id))
                            i += pat.count
                            lo = i
                        } else {
                            i += 1
                        }
                    }
                    if lo < r.upperBound { next.append(.text(lo..<r.upperBound)) }
                }
                frags = next
            }
        }
        return frags
    }

    @inline(__always)
    static func matches<C: Collection>(_ buf: UnsafeBufferPointer<UInt8>, at i: Int, _ pat: C) -> Bool
    where C.Element == UInt8 {
        var j = i
        for b in pat {
            if j >= buf.count || buf[j] != b { return false }
            j += 1
        }
        return true
    }

    /// Byte-level BPE of one text fragment (valid UTF-8): pre-tokenize, then merge each word.
    func encodeBPE(_ text: UnsafeBufferPointer<UInt8>, scratch: inout BPEModel.Scratch, into out: inout [Int]) {
        guard let bpe, let pre else { return }
        // Decode scalars with their byte offsets and classes.
        var cps: [UInt32] = []
        var cls: [UInt8] = []
        var offs: [Int] = []
        cps.reserveCapacity(text.count)
        cls.reserveCapacity(text.count)
        offs.reserveCapacity(text.count + 1)
        var i = 0
        let n = text.count
        while i < n {
            let b0 = UInt32(text[i])
            var v: UInt32
            var len: Int
            if b0 < 0x80 {
                v = b0; len = 1
            } else if b0 < 0xE0 {
                v = b0 & 0x1F; len = 2
            } else if b0 < 0xF0 {
                v = b0 & 0x0F; len = 3
            } else {
                v = b0 & 0x07; len = 4
            }
            if i + len > n { len = n - i }
            for k in 1..<max(len, 1) { v = v << 6 | (UInt32(text[i + k]) & 0x3F) }
            offs.append(i)
            cps.append(v)
            cls.append(v < 0x80 ? Self.asciiClass[Int(v)] : CharClass.of(v))
            i += len
        }
        offs.append(n)
        let ends = cps.withUnsafeBufferPointer { cp in
            cls.withUnsafeBufferPointer { cl in pre.split(cp, cl) }
        }
        var start = 0
        for e in ends {
            let word = UnsafeBufferPointer(rebasing: text[offs[start]..<offs[e]])
            bpe.encode(word: word, scratch: &scratch, into: &out)
            start = e
        }
    }

    static let asciiClass: [UInt8] = (0..<128).map { CharClass.compute(Unicode.Scalar(UInt8($0))) }
}
