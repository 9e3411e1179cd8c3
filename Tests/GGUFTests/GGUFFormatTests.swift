import Foundation
import GGUF
import Testing

// Thorough format tests: round trips through GGUFWriter, typed accessors, tensor layout, memory
// mapping, and hostile files that must each be rejected with the specific GGUFError that names them.

// MARK: - Helpers

/// Hand-assembled GGUF bytes, for files GGUFWriter cannot (or should not) produce.
private struct RawFile {
    var b: [UInt8] = []

    init() {}
    init(magic: UInt32 = 0x4655_4747, version: UInt32 = 3, tensors: UInt64, kvs: UInt64) {
        u32(magic); u32(version); u64(tensors); u64(kvs)
    }

    mutating func u8(_ v: UInt8) { b.append(v) }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
    mutating func str(_ s: String) { u64(UInt64(s.utf8.count)); b.append(contentsOf: s.utf8) }
    mutating func rawStr(_ bytes: [UInt8]) { u64(UInt64(bytes.count)); b.append(contentsOf: bytes) }
    mutating func pad(to alignment: Int) { while b.count % alignment != 0 { b.append(0) } }
    mutating func zeros(_ n: Int) { b += [UInt8](repeating: 0, count: n) }
    /// One tensor-info record.
    mutating func tensor(_ name: String, dims: [UInt64], type: UInt32, offset: UInt64) {
        str(name); u32(UInt32(dims.count)); dims.forEach { u64($0) }; u32(type); u64(offset)
    }
    var count: Int { b.count }
}

/// SplitMix64: deterministic bytes and integers for tests.
private struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) } }
}

/// Parses and expects exactly `error`.
private func expectError(
    _ error: GGUFError, _ bytes: [UInt8], _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation
) {
    do {
        let f = try GGUFFile(bytes: bytes)
        Issue.record("parsed (\(f.tensors.count) tensors) but expected \(error)", sourceLocation: sourceLocation)
    } catch let e as GGUFError {
        #expect(e == error, comment, sourceLocation: sourceLocation)
    } catch {
        Issue.record("non-GGUF error \(error)", sourceLocation: sourceLocation)
    }
}

private func parseError(_ bytes: [UInt8]) -> GGUFError? {
    do { _ = try GGUFFile(bytes: bytes); return nil } catch { return error as? GGUFError }
}

/// Every metadata value type, extremes of each integer type, unicode strings, empty and nested arrays.
private func everyValueMetadata() -> [(String, GGUFValue)] {
    [
        ("general.architecture", .string("llama")),
        ("u8.min", .uint8(0)), ("u8.max", .uint8(.max)),
        ("i8.min", .int8(.min)), ("i8.max", .int8(.max)),
        ("u16.max", .uint16(.max)), ("i16.min", .int16(.min)), ("i16.max", .int16(.max)),
        ("u32.max", .uint32(.max)), ("i32.min", .int32(.min)), ("i32.max", .int32(.max)),
        ("u64.max", .uint64(.max)), ("i64.min", .int64(.min)), ("i64.max", .int64(.max)),
        ("f32", .float32(-3.25)), ("f32.inf", .float32(.infinity)), ("f32.negzero", .float32(-0.0)),
        ("f32.subnormal", .float32(.leastNonzeroMagnitude)), ("f32.max", .float32(.greatestFiniteMagnitude)),
        ("f64", .float64(.pi)), ("f64.ninf", .float64(-.infinity)), ("f64.tiny", .float64(.leastNonzeroMagnitude)),
        ("bool.t", .bool(true)), ("bool.f", .bool(false)),
        ("str.empty", .string("")),
        ("str.unicode", .string("Grüße, 世界! 🦙🚀 e\u{301} \u{1F1EF}\u{1F1F5} ‮rtl")),
        ("str.nul", .string("a\u{0}b")),
        ("str.long", .string(String(repeating: "λx.", count: 700))),
        ("ключ.🔑", .string("unicode key")),
        ("arr.u8", .array(.uint8, [.uint8(0), .uint8(255)])),
        ("arr.i8", .array(.int8, [.int8(-128), .int8(127)])),
        ("arr.u16", .array(.uint16, [.uint16(1), .uint16(65535)])),
        ("arr.i16", .array(.int16, [.int16(-32768)])),
        ("arr.u32", .array(.uint32, [.uint32(7), .uint32(.max)])),
        ("arr.i32", .array(.int32, [.int32(-1), .int32(2), .int32(-3)])),
        ("arr.u64", .array(.uint64, [.uint64(.max), .uint64(0)])),
        ("arr.i64", .array(.int64, [.int64(.min), .int64(42)])),
        ("arr.f32", .array(.float32, [.float32(0.5), .float32(-1e30), .float32(3)])),
        ("arr.f64", .array(.float64, [.float64(1e300), .float64(-0.125)])),
        ("arr.bool", .array(.bool, [.bool(true), .bool(false), .bool(true)])),
        ("arr.str", .array(.string, [.string("<s>"), .string(""), .string("▁the"), .string("日本語"), .string("🦙")])),
        ("arr.empty", .array(.int32, [])),
        ("arr.empty.str", .array(.string, [])),
        ("arr.nested", .array(.array, [
            .array(.uint8, [.uint8(1), .uint8(2)]),
            .array(.string, [.string("ä"), .string("b")]),
            .array(.float32, []),
            .array(.array, [.array(.int64, [.int64(-9)])]),
        ])),
        ("arr.big", .array(.uint16, (0..<1000).map { .uint16(UInt16($0 * 61 % 65536)) })),
    ]
}

/// A tensor of the given type and shape filled with seeded random bytes of the exact size.
private func randomTensor(_ name: String, _ shape: [Int], _ type: GGMLType, seed: UInt64) -> GGUFWriter.Tensor {
    let rows = shape.dropFirst().reduce(1, *)
    var rng = SplitMix(state: seed)
    return .init(name: name, shape: shape, type: type, data: rng.bytes(type.rowBytes(shape[0])! * rows))
}

private func tensorSet() -> [GGUFWriter.Tensor] {
    [
        randomTensor("token_embd.weight", [64, 3], .q4_0, seed: 1),
        randomTensor("norm", [7], .f32, seed: 2),
        randomTensor("half", [5, 3], .f16, seed: 3),
        randomTensor("brain", [9, 1, 2], .bf16, seed: 4),
        randomTensor("q41", [96, 2], .q4_1, seed: 5),
        randomTensor("q80", [32, 2, 2, 1], .q8_0, seed: 6),
        randomTensor("q81", [32], .q8_1, seed: 7),
        randomTensor("k.q4k", [256, 2], .q4_K, seed: 8),
        randomTensor("k.q6k", [512], .q6_K, seed: 9),
        randomTensor("ints", [3], .i32, seed: 10),
        randomTensor("bytes", [1], .i8, seed: 11),
        randomTensor("doubles", [2, 2], .f64, seed: 12),
        randomTensor("权重.🦙", [33], .f32, seed: 13),
    ]
}

private func writer(version: UInt32 = 3, alignment: Int? = nil, tensors: [GGUFWriter.Tensor] = tensorSet()) -> GGUFWriter {
    var w = GGUFWriter(version: version)
    for (k, v) in everyValueMetadata() { w.add(k, v) }
    if let alignment {
        w.add("general.alignment", .uint32(UInt32(alignment)))
        w.alignment = alignment
    }
    tensors.forEach { w.add(tensor: $0) }
    return w
}

private func tempPath(_ tag: String) -> String {
    NSTemporaryDirectory() + "swiftlet-\(tag)-\(UUID().uuidString).gguf"
}

/// Checks everything a parsed file says against the writer that produced it.
private func checkAgainstWriter(_ f: GGUFFile, _ w: GGUFWriter, alignment: Int) throws {
    #expect(f.version == w.version)
    #expect(f.metadataKeys == w.metadata.map(\.0))
    #expect(f.metadata.count == w.metadata.count)
    for (k, v) in w.metadata { #expect(f.metadata[k] == v, "\(k)") }
    #expect(f.alignment == alignment)
    #expect(f.dataOffset % alignment == 0)
    #expect(f.tensors.map(\.name) == w.tensors.map(\.name))
    var expectedOffset = 0
    for t in w.tensors {
        let info = try #require(f.tensorInfo(t.name))
        #expect(info.shape == t.shape)
        #expect(info.type == t.type)
        #expect(info.byteCount == t.data.count)
        #expect(info.elementCount == t.shape.reduce(1, *))
        #expect(info.rowCount == t.shape.dropFirst().reduce(1, *))
        #expect(info.offset == expectedOffset, "\(t.name)")
        #expect(info.offset % alignment == 0)
        #expect(Array(f.tensorData(info)) == t.data, "\(t.name) bytes")
        let p = try #require(f.tensorData(info).baseAddress)
        #expect(Int(bitPattern: p) % alignment == 0 || alignment > 64, "\(t.name) data pointer alignment")
        expectedOffset += (t.data.count + alignment - 1) / alignment * alignment
    }
    #expect(f.dataOffset + expectedOffset == f.fileSize)
}

// MARK: - Round trips

@Suite struct GGUFRoundTripTests {
    @Test(arguments: [UInt32(2), 3])
    func everyValueTypeAndTensorRoundTrips(version: UInt32) throws {
        let w = writer(version: version)
        let bytes = w.bytes()
        let f = try GGUFFile(bytes: bytes)
        #expect(f.path == "<memory>")
        #expect(f.fileSize == bytes.count)
        try checkAgainstWriter(f, w, alignment: 32)
    }

    /// Re-serialising what was parsed reproduces the file byte for byte.
    @Test(arguments: [UInt32(2), 3])
    func reserialisationIsByteIdentical(version: UInt32) throws {
        let bytes = writer(version: version, alignment: 64).bytes()
        let f = try GGUFFile(bytes: bytes)
        var w2 = GGUFWriter(version: f.version)
        w2.alignment = f.alignment
        for k in f.metadataKeys { w2.add(k, f.metadata[k]!) }
        for t in f.tensors {
            w2.add(tensor: .init(name: t.name, shape: t.shape, type: t.type, data: Array(f.tensorData(t))))
        }
        #expect(w2.bytes() == bytes)
    }

    @Test func nanFloatsKeepTheirBits() throws {
        var w = GGUFWriter()
        let f32 = Float(bitPattern: 0x7FC0_1234), f64 = Double(bitPattern: 0xFFF8_0000_0000_0ABC)
        w.add("nan32", .float32(f32))
        w.add("nan64", .float64(f64))
        w.add("nans", .array(.float32, [.float32(.nan), .float32(-.signalingNaN)]))
        let f = try GGUFFile(bytes: w.bytes())
        guard case .float32(let a) = f.metadata["nan32"], case .float64(let b) = f.metadata["nan64"] else {
            Issue.record("wrong types"); return
        }
        #expect(a.bitPattern == f32.bitPattern && b.bitPattern == f64.bitPattern)
        #expect(try f.floatArray("nans")?.allSatisfy(\.isNaN) == true)
        #expect(try f.double("nan32")?.isNaN == true)
    }

    /// Eight levels of array nesting is the most the reader takes; all of them round-trip.
    @Test func deepestAllowedNestingRoundTrips() throws {
        var v = GGUFValue.array(.string, [.string("core")])
        for _ in 0..<7 { v = .array(.array, [v, v]) }
        var w = GGUFWriter()
        w.add("deep", v)
        let f = try GGUFFile(bytes: w.bytes())
        #expect(f.metadata["deep"] == v)
    }

    @Test func emptyFileWithNoMetadataOrTensors() throws {
        for version: UInt32 in [2, 3] {
            let bytes = GGUFWriter(version: version).bytes()
            #expect(bytes.count == 32)  // 24-byte header padded to 32
            let f = try GGUFFile(bytes: bytes)
            #expect(f.metadataKeys.isEmpty && f.tensors.isEmpty)
            #expect(f.alignment == 32 && f.dataOffset == 32 && f.fileSize == 32)
        }
        // The padding after the header is optional when there is no tensor data.
        let f = try GGUFFile(bytes: RawFile(tensors: 0, kvs: 0).b)
        #expect(f.dataOffset == 32 && f.tensors.isEmpty)
    }

    @Test func metadataOrderIsFileOrder() throws {
        var w = GGUFWriter()
        let keys = ["zeta", "alpha", "mid", "Alpha", "a.b.c", ""]
        for (i, k) in keys.enumerated() { w.add(k, .int32(Int32(i))) }
        let f = try GGUFFile(bytes: w.bytes())
        #expect(f.metadataKeys == keys)
        #expect(try f.int("") == 5)
    }
}

// MARK: - Typed accessors

@Suite struct GGUFAccessorTests {
    let f: GGUFFile

    init() throws {
        var w = GGUFWriter()
        for (k, v) in everyValueMetadata() { w.add(k, v) }
        w.add("one", .uint8(1))
        w.add("zero", .int64(0))
        f = try GGUFFile(bytes: w.bytes())
    }

    @Test func integers() throws {
        #expect(try f.int("u8.max") == 255)
        #expect(try f.int("i8.min") == -128)
        #expect(try f.int("u16.max") == 65535)
        #expect(try f.int("i16.min") == -32768)
        #expect(try f.int("u32.max") == Int(UInt32.max))
        #expect(try f.int("i32.min") == Int(Int32.min))
        #expect(try f.int("i64.min") == Int.min)
        #expect(try f.int("i64.max") == Int.max)
        #expect(try f.int("bool.t") == 1)
        #expect(try f.requiredInt("u8.max") == 255)
        // UInt64.max does not fit in Int: reported as a type error, not trapped.
        #expect(throws: GGUFError.wrongMetadataType(key: "u64.max", expected: "integer", found: "uint64")) {
            try f.int("u64.max")
        }
        #expect(throws: GGUFError.wrongMetadataType(key: "f32", expected: "integer", found: "float32")) { try f.int("f32") }
        #expect(throws: GGUFError.wrongMetadataType(key: "str.empty", expected: "integer", found: "string")) {
            try f.int("str.empty")
        }
        #expect(throws: GGUFError.wrongMetadataType(key: "arr.i32", expected: "integer", found: "array")) {
            try f.requiredInt("arr.i32")
        }
        #expect(throws: GGUFError.missingMetadata("absent")) { try f.requiredInt("absent") }
    }

    @Test func doubles() throws {
        #expect(try f.double("f32") == -3.25)
        #expect(try f.double("f64") == .pi)
        #expect(try f.double("f32.inf") == .infinity)
        #expect(try f.double("f32.negzero")?.sign == .minus)
        #expect(try f.double("i32.min") == Double(Int32.min))
        #expect(throws: GGUFError.wrongMetadataType(key: "u64.max", expected: "number", found: "uint64")) {
            try f.double("u64.max")  // not representable as Int, so not offered as a number either
        }
        #expect(throws: GGUFError.wrongMetadataType(key: "str.unicode", expected: "number", found: "string")) {
            try f.double("str.unicode")
        }
        #expect(throws: GGUFError.wrongMetadataType(key: "arr.f32", expected: "number", found: "array")) {
            try f.double("arr.f32")
        }
    }

    @Test func bools() throws {
        #expect(try f.bool("bool.t") == true)
        #expect(try f.bool("bool.f") == false)
        #expect(try f.bool("one") == true)
        #expect(try f.bool("zero") == false)
        #expect(throws: GGUFError.wrongMetadataType(key: "f64", expected: "bool", found: "float64")) { try f.bool("f64") }
        #expect(throws: GGUFError.wrongMetadataType(key: "str.nul", expected: "bool", found: "string")) { try f.bool("str.nul") }
    }

    @Test func strings() throws {
        #expect(try f.string("str.unicode") == "Grüße, 世界! 🦙🚀 e\u{301} \u{1F1EF}\u{1F1F5} ‮rtl")
        #expect(try f.string("str.nul") == "a\u{0}b")
        #expect(try f.string("str.nul")?.utf8.count == 3)
        #expect(try f.string("str.empty") == "")
        #expect(try f.string("ключ.🔑") == "unicode key")
        #expect(try f.string("str.long")?.count == 2100)
        #expect(throws: GGUFError.wrongMetadataType(key: "bool.t", expected: "string", found: "bool")) { try f.string("bool.t") }
        #expect(throws: GGUFError.wrongMetadataType(key: "arr.str", expected: "string", found: "array")) { try f.string("arr.str") }
    }

    @Test func arrays() throws {
        #expect(try f.stringArray("arr.str") == ["<s>", "", "▁the", "日本語", "🦙"])
        #expect(try f.stringArray("arr.empty.str") == [])
        #expect(try f.intArray("arr.i32") == [-1, 2, -3])
        #expect(try f.intArray("arr.i8") == [-128, 127])
        #expect(try f.intArray("arr.u32") == [7, Int(UInt32.max)])
        #expect(try f.intArray("arr.bool") == [1, 0, 1])
        #expect(try f.intArray("arr.empty") == [])
        #expect(try f.intArray("arr.big")?.count == 1000)
        #expect(try f.floatArray("arr.f32") == [0.5, -1e30, 3])
        #expect(try f.floatArray("arr.f64") == [Float(1e300), -0.125])  // 1e300 becomes +inf as Float
        #expect(try f.floatArray("arr.i16") == [-32768])
        #expect(try f.array("arr.nested")?.count == 4)
        #expect(try f.array("arr.nested")?[3] == .array(.array, [.array(.int64, [.int64(-9)])]))

        #expect(throws: GGUFError.wrongMetadataType(key: "arr.i32", expected: "array of string", found: "array of int32")) {
            try f.stringArray("arr.i32")
        }
        #expect(throws: GGUFError.wrongMetadataType(key: "arr.f32", expected: "array of integer", found: "array of float32")) {
            try f.intArray("arr.f32")
        }
        #expect(throws: GGUFError.wrongMetadataType(key: "arr.u64", expected: "array of integer", found: "array of uint64")) {
            try f.intArray("arr.u64")  // UInt64.max does not fit
        }
        #expect(throws: GGUFError.wrongMetadataType(key: "arr.str", expected: "array of number", found: "array of string")) {
            try f.floatArray("arr.str")
        }
        #expect(throws: GGUFError.wrongMetadataType(key: "arr.nested", expected: "array of integer", found: "array of array")) {
            try f.intArray("arr.nested")
        }
        #expect(throws: GGUFError.wrongMetadataType(key: "u8.max", expected: "array", found: "uint8")) { try f.stringArray("u8.max") }
        #expect(throws: GGUFError.wrongMetadataType(key: "str.empty", expected: "array", found: "string")) { try f.intArray("str.empty") }
        #expect(throws: GGUFError.wrongMetadataType(key: "f32", expected: "array", found: "float32")) { try f.floatArray("f32") }
    }

    @Test func missingKeysAreNil() throws {
        #expect(try f.string("nope") == nil)
        #expect(try f.int("nope") == nil)
        #expect(try f.double("nope") == nil)
        #expect(try f.bool("nope") == nil)
        #expect(try f.array("nope") == nil)
        #expect(try f.stringArray("nope") == nil)
        #expect(try f.intArray("nope") == nil)
        #expect(try f.floatArray("nope") == nil)
        // Lookups are exact: no case folding, no prefix matching.
        #expect(try f.string("GENERAL.ARCHITECTURE") == nil)
        #expect(try f.string("general.architectur") == nil)
    }

    @Test func valueHelpersAndDescriptions() {
        #expect(GGUFValue.uint64(UInt64(Int.max) + 1).intValue == nil)
        #expect(GGUFValue.uint64(UInt64(Int.max)).intValue == Int.max)
        #expect(GGUFValue.float32(2).intValue == nil)
        #expect(GGUFValue.string("1").intValue == nil && GGUFValue.string("1").doubleValue == nil)
        #expect(GGUFValue.int8(-3).doubleValue == -3)
        #expect(GGUFValue.uint8(0).boolValue == false && GGUFValue.uint8(2).boolValue == true)
        #expect(GGUFValue.float32(1).boolValue == nil)
        #expect(GGUFValue.int32(1).arrayValue == nil && GGUFValue.int32(1).stringValue == nil)
        for t in GGUFValueType.allCases {
            let v: GGUFValue = switch t {
            case .uint8: .uint8(1)
            case .int8: .int8(1)
            case .uint16: .uint16(1)
            case .int16: .int16(1)
            case .uint32: .uint32(1)
            case .int32: .int32(1)
            case .float32: .float32(1)
            case .bool: .bool(true)
            case .string: .string("1")
            case .array: .array(.uint8, [])
            case .uint64: .uint64(1)
            case .int64: .int64(1)
            case .float64: .float64(1)
            }
            #expect(v.type == t)
        }
        #expect(GGUFValue.string("x").description == "\"x\"")
        #expect(GGUFValue.array(.int32, [.int32(1), .int32(2)]).description == "[1, 2]")
        #expect(GGUFValue.array(.uint8, (0..<9).map { .uint8($0) }).description == "[uint8 × 9]")
        #expect(GGUFValue.int64(-5).description == "-5")
        #expect(GGUFValue.bool(false).description == "false")
    }
}

// MARK: - Tensors, alignment, mmap

@Suite struct GGUFTensorLayoutTests {
    @Test(arguments: [1, 8, 32, 64, 256, 4096])
    func explicitAlignment(alignment: Int) throws {
        let w = writer(alignment: alignment)
        let f = try GGUFFile(bytes: w.bytes())
        try checkAgainstWriter(f, w, alignment: alignment)
    }

    @Test func defaultAlignmentIs32() throws {
        let w = writer()
        let f = try GGUFFile(bytes: w.bytes())
        #expect(f.metadata["general.alignment"] == nil)
        try checkAgainstWriter(f, w, alignment: 32)
    }

    @Test func largestAlignment() throws {
        var w = GGUFWriter()
        w.add("general.alignment", .uint32(65536))
        w.alignment = 65536
        w.add(tensor: randomTensor("a", [4], .f32, seed: 1))
        w.add(tensor: randomTensor("b", [32], .q8_0, seed: 2))
        let f = try GGUFFile(bytes: w.bytes())
        #expect(f.alignment == 65536 && f.dataOffset == 65536)
        #expect(f.tensorInfo("b")?.offset == 65536)
        #expect(Array(f.tensorData(f.tensorInfo("b")!)) == w.tensors[1].data)
    }

    @Test func tensorSizesFollowBlockLayout() throws {
        let f = try GGUFFile(bytes: writer().bytes())
        let expect: [String: Int] = [
            "token_embd.weight": 3 * 2 * 18, "norm": 28, "half": 30, "brain": 36, "q41": 2 * 3 * 20,
            "q80": 4 * 34, "q81": 36, "k.q4k": 2 * 144, "k.q6k": 2 * 210, "ints": 12, "bytes": 1, "doubles": 32,
            "权重.🦙": 132,
        ]
        for t in f.tensors { #expect(t.byteCount == expect[t.name], "\(t.name)") }
        #expect(f.tensorInfo("q80")?.rowCount == 4)
        #expect(f.tensorInfo("brain")?.shape == [9, 1, 2])
        #expect(f.tensorInfo("missing") == nil)
    }

    /// A tensor may use a larger gap than the writer's padding, as long as offsets stay aligned.
    @Test func handWrittenOffsetsWithGaps() throws {
        var r = RawFile(tensors: 2, kvs: 1)
        r.str("general.alignment"); r.u32(4); r.u32(64)
        r.tensor("second", dims: [4], type: 0, offset: 128)
        r.tensor("first", dims: [2, 2], type: 1, offset: 0)
        r.pad(to: 64)
        let dataStart = r.count
        var rng = SplitMix(state: 5)
        let data = rng.bytes(128 + 16)
        r.b += data
        let f = try GGUFFile(bytes: r.b)
        #expect(f.dataOffset == dataStart)
        #expect(f.tensors.map(\.name) == ["second", "first"])
        #expect(Array(f.tensorData(f.tensorInfo("second")!)) == Array(data[128..<144]))
        #expect(Array(f.tensorData(f.tensorInfo("first")!)) == Array(data[0..<8]))
        // Two tensors may even share bytes: the reader does not forbid overlap.
        var o = RawFile(tensors: 2, kvs: 0)
        o.tensor("a", dims: [8], type: 0, offset: 0)
        o.tensor("b", dims: [4], type: 0, offset: 0)
        o.pad(to: 32)
        o.zeros(32)
        #expect(throws: Never.self) { try GGUFFile(bytes: o.b) }
    }

    @Test(arguments: [UInt32(2), 3])
    func memoryMappedFileMatchesInMemory(version: UInt32) throws {
        let w = writer(version: version, alignment: 64)
        let bytes = w.bytes()
        let path = tempPath("mmap")
        #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let f = try GGUFFile(path: path)
        #expect(f.path == path)
        #expect(f.fileSize == bytes.count)
        try checkAgainstWriter(f, w, alignment: 64)
        let m = try GGUFFile(bytes: bytes)
        #expect(f.dataOffset == m.dataOffset)
        for t in f.tensors { #expect(Array(f.tensorData(t)) == Array(m.tensorData(m.tensorInfo(t.name)!))) }
        // Tensor data stays valid after the file is deleted (the mapping keeps it alive).
        try FileManager.default.removeItem(atPath: path)
        let last = try #require(f.tensors.last)
        #expect(Array(f.tensorData(last)) == w.tensors.last!.data)
    }

    @Test func tensorDataOutlivesOtherReferences() throws {
        let w = writer()
        var data: [UInt8] = []
        do {
            let f = try GGUFFile(bytes: w.bytes())
            data = Array(f.tensorData(f.tensors[0]))
        }
        #expect(data == w.tensors[0].data)
    }
}

// MARK: - GGMLType

@Suite struct GGMLTypeTests {
    @Test func blockLayouts() {
        let expected: [GGMLType: (Int, Int, String)] = [
            .f32: (1, 4, "F32"), .f16: (1, 2, "F16"), .bf16: (1, 2, "BF16"), .q4_0: (32, 18, "Q4_0"),
            .q4_1: (32, 20, "Q4_1"), .q5_0: (32, 22, "Q5_0"), .q5_1: (32, 24, "Q5_1"), .q8_0: (32, 34, "Q8_0"),
            .q8_1: (32, 36, "Q8_1"), .q2_K: (256, 84, "Q2_K"), .q3_K: (256, 110, "Q3_K"), .q4_K: (256, 144, "Q4_K"),
            .q5_K: (256, 176, "Q5_K"), .q6_K: (256, 210, "Q6_K"), .q8_K: (256, 292, "Q8_K"), .iq4_nl: (32, 18, "IQ4_NL"), .i8: (1, 1, "I8"),
            .i16: (1, 2, "I16"), .i32: (1, 4, "I32"), .i64: (1, 8, "I64"), .f64: (1, 8, "F64"),
        ]
        #expect(expected.count == GGMLType.allCases.count)
        for t in GGMLType.allCases {
            let (bs, bb, name) = expected[t]!
            #expect(t.blockSize == bs && t.blockBytes == bb && t.description == name, "\(t)")
            #expect(t.rowBytes(0) == 0)
            #expect(t.rowBytes(bs * 3) == bb * 3)
            #expect(t.rowBytes(-bs) == nil)
            if bs > 1 {
                #expect(t.rowBytes(bs + 1) == nil)
                #expect(t.rowBytes(bs - 1) == nil)
            }
            if bb > bs {
                #expect(t.rowBytes(Int.max / bs * bs) == nil, "\(t) overflow")
            } else {
                #expect(t.rowBytes(Int.max / bs * bs) == Int.max / bs * bb, "\(t) largest")
            }
        }
        #expect(GGMLType(rawValue: 4) == nil && GGMLType(rawValue: 5) == nil && GGMLType(rawValue: 29) == nil)
    }
}

// MARK: - Hostile files

@Suite struct GGUFHostileInputTests {
    @Test func badMagic() {
        var b = writer().bytes()
        b[0...3] = [0x46, 0x55, 0x47, 0x47]  // "FUGG": big-endian spelling
        expectError(.badMagic(found: 0x4747_5546), b)
        expectError(.badMagic(found: 0), [UInt8](repeating: 0, count: 64))
        expectError(.badMagic(found: 0x4555_4747), Array("GGUE and then some more bytes here".utf8))
        // Too short even for the magic.
        expectError(.truncated(what: "magic", offset: 0, needed: 4, available: 3), Array("GGU".utf8))
        expectError(.truncated(what: "magic", offset: 0, needed: 4, available: 0), [])
    }

    @Test(arguments: [UInt32(0), 1, 4, 5, 0x0300_0000, .max])
    func unsupportedVersion(version: UInt32) {
        expectError(.unsupportedVersion(version), RawFile(version: version, tensors: 0, kvs: 0).b)
        var w = writer()
        w.version = version
        expectError(.unsupportedVersion(version), w.bytes())
    }

    @Test func headerTruncation() {
        expectError(.truncated(what: "version", offset: 4, needed: 4, available: 2), Array(RawFile(tensors: 0, kvs: 0).b.prefix(6)))
        expectError(.truncated(what: "tensor count", offset: 8, needed: 8, available: 7), Array(RawFile(tensors: 0, kvs: 0).b.prefix(15)))
        expectError(.truncated(what: "metadata count", offset: 16, needed: 8, available: 0), Array(RawFile(tensors: 0, kvs: 0).b.prefix(16)))
    }

    /// Cutting a file anywhere before the end of its last tensor must throw, and say where.
    @Test(arguments: [32, 64])
    func everyPrefixTruncationThrows(alignment: Int) throws {
        // Tensor sizes that are multiples of the alignment, so the last tensor ends exactly at EOF.
        var tensors = [
            randomTensor("a", [alignment / 4], .f32, seed: 1),
            randomTensor("b", [alignment / 2, 2], .f16, seed: 2),
        ]
        tensors.append(randomTensor("c", [32 * alignment / 2], .q4_0, seed: 3))  // 18 * alignment / 2 bytes
        var small = GGUFWriter(version: 3)
        small.add("general.architecture", .string("llama"))
        small.add("general.alignment", .uint32(UInt32(alignment)))
        small.alignment = alignment
        small.add("tok", .array(.string, [.string("a"), .string("ü")]))
        small.add("nest", .array(.array, [.array(.int32, [.int32(1)])]))
        small.add("f", .float32(1))
        tensors.forEach { small.add(tensor: $0) }
        let full = small.bytes()
        let f = try GGUFFile(bytes: full)
        let end = f.dataOffset + f.tensors.map { $0.offset + $0.byteCount }.max()!
        #expect(end == full.count)
        // The header (metadata + tensor infos) ends where the alignment-1 layout would put data.
        var packed = small
        packed.alignment = 1
        let headerEnd = packed.bytes().count - tensors.reduce(0) { $0 + $1.data.count }
        #expect(headerEnd <= f.dataOffset && f.dataOffset - headerEnd < alignment)

        var kinds: [String: Int] = [:]
        for n in 0..<full.count {
            let prefix = Array(full.prefix(n))
            guard let e = parseError(prefix) else {
                Issue.record("prefix of \(n) bytes parsed")
                continue
            }
            switch e {
            case .truncated(_, let offset, let needed, let available):
                #expect(n < headerEnd, "prefix \(n): \(e)")
                #expect(offset + available == n && needed > available, "prefix \(n): \(e)")
                kinds["truncated", default: 0] += 1
            case .absurdCount(_, _, let offset):
                // A count that no longer fits in what is left of a cut file.
                #expect(n < headerEnd && offset < n, "prefix \(n): \(e)")
                kinds["absurd", default: 0] += 1
            case .tensorOutOfBounds(_, let offset, let size, let dataSize):
                #expect(n >= headerEnd, "prefix \(n): \(e)")
                #expect(dataSize == max(0, n - f.dataOffset))
                #expect(Int(offset) + size > dataSize)
                kinds["oob", default: 0] += 1
            default:
                Issue.record("prefix \(n): unexpected \(e)")
            }
        }
        #expect(kinds["truncated", default: 0] > 0 && kinds["oob", default: 0] > 0)
        #expect(kinds.values.reduce(0, +) == full.count)
    }

    @Test func absurdHeaderCounts() {
        var r = RawFile(tensors: 0, kvs: .max)
        r.zeros(100)
        expectError(.absurdCount(what: "metadata count", count: .max, offset: 16), r.b)
        var t = RawFile(tensors: .max, kvs: 0)
        t.zeros(100)
        expectError(.absurdCount(what: "tensor count", count: .max, offset: 8), t.b)
        var t2 = RawFile(tensors: 1 << 62, kvs: 1 << 62)
        t2.zeros(100)
        expectError(.absurdCount(what: "metadata count", count: 1 << 62, offset: 16), t2.b)
        // One more entry than the remaining bytes could possibly hold.
        var k = RawFile(tensors: 0, kvs: 3)
        k.zeros(38)  // 3 entries need at least 39 bytes
        expectError(.absurdCount(what: "metadata count", count: 3, offset: 16), k.b)
    }

    @Test func absurdArrayLength() {
        for (elem, len) in [(UInt32(4), UInt64.max), (8, .max), (9, .max), (0, 1 << 40), (12, 1 << 33)] {
            var r = RawFile(tensors: 0, kvs: 1)
            r.str("arr")
            r.u32(9)  // array
            r.u32(elem)
            r.u64(len)
            r.zeros(256)
            expectError(.absurdCount(what: "array length of 'arr'", count: len, offset: 43), r.b, "elem \(elem)")
        }
        // The length bound is per element type: 256 bytes hold 64 uint32 but not 65.
        var ok = RawFile(tensors: 0, kvs: 1)
        ok.str("arr"); ok.u32(9); ok.u32(4); ok.u64(64); ok.zeros(256)
        #expect(throws: Never.self) { try GGUFFile(bytes: ok.b) }
        var bad = RawFile(tensors: 0, kvs: 1)
        bad.str("arr"); bad.u32(9); bad.u32(4); bad.u64(65); bad.zeros(256)
        expectError(.absurdCount(what: "array length of 'arr'", count: 65, offset: 43), bad.b)
    }

    @Test func absurdStringLengths() {
        // Key length.
        var k = RawFile(tensors: 0, kvs: 1)
        k.u64(.max)
        k.zeros(40)
        expectError(.truncated(what: "metadata key", offset: 32, needed: Int.max, available: 40), k.b)
        // String value length.
        var v = RawFile(tensors: 0, kvs: 1)
        v.str("s"); v.u32(8); v.u64(.max); v.zeros(40)
        expectError(.truncated(what: "value of 's'", offset: 45, needed: Int.max, available: 40), v.b)
        // String inside an array.
        var a = RawFile(tensors: 0, kvs: 1)
        a.str("s"); a.u32(9); a.u32(8); a.u64(2); a.str("ok"); a.u64(1 << 63); a.zeros(20)
        expectError(.truncated(what: "value of 's'", offset: 67, needed: Int.max, available: 20), a.b)
        // Tensor name length.
        var t = RawFile(tensors: 1, kvs: 0)
        t.u64(.max - 7); t.zeros(60)
        expectError(.truncated(what: "tensor name", offset: 32, needed: Int.max, available: 60), t.b)
        // Off by one: a length exactly one past the end.
        var o = RawFile(tensors: 0, kvs: 1)
        o.str("s"); o.u32(8); o.u64(5); o.b += Array("four".utf8)
        expectError(.truncated(what: "value of 's'", offset: 45, needed: 5, available: 4), o.b)
    }

    @Test func unknownValueTypes() {
        for raw: UInt32 in [13, 14, 100, .max] {
            var r = RawFile(tensors: 0, kvs: 1)
            r.str("k"); r.u32(raw); r.zeros(16)
            expectError(.unknownValueType(raw, key: "k", offset: 33), r.b)
        }
        // Unknown element type of an array, and of a nested array.
        var a = RawFile(tensors: 0, kvs: 1)
        a.str("arr"); a.u32(9); a.u32(77); a.u64(1); a.zeros(16)
        expectError(.unknownValueType(77, key: "arr", offset: 39), a.b)
        var n = RawFile(tensors: 0, kvs: 1)
        n.str("arr"); n.u32(9); n.u32(9); n.u64(1); n.u32(13); n.u64(0); n.zeros(16)
        expectError(.unknownValueType(13, key: "arr", offset: 51), n.b)
    }

    @Test func unknownTensorTypes() {
        for raw: UInt32 in [4, 5, 16, 23, 29, 31, 39, 1000, .max] {
            var r = RawFile(tensors: 1, kvs: 0)
            r.tensor("t", dims: [32], type: raw, offset: 0)
            r.pad(to: 32); r.zeros(4096)
            expectError(.unknownTensorType(tensor: "t", type: raw), r.b)
        }
    }

    @Test func dimensionCounts() {
        for nd: UInt32 in [0, 5, 8, .max] {
            var r = RawFile(tensors: 1, kvs: 0)
            r.str("t"); r.u32(nd)
            for _ in 0..<min(nd, 8) { r.u64(1) }
            r.u32(0); r.u64(0); r.pad(to: 32); r.zeros(64)
            expectError(.tooManyDimensions(tensor: "t", count: nd), r.b)
        }
        for dims: [UInt64] in [[4], [4, 1], [4, 1, 1], [4, 1, 1, 1]] {
            var r = RawFile(tensors: 1, kvs: 0)
            r.tensor("t", dims: dims, type: 0, offset: 0)
            r.pad(to: 32); r.zeros(16)
            #expect(throws: Never.self) { try GGUFFile(bytes: r.b) }
        }
    }

    private func oneTensor(_ dims: [UInt64], type: UInt32 = 0, offset: UInt64 = 0, data: Int = 64, alignment: UInt32? = nil) -> [UInt8] {
        var r = RawFile(tensors: 1, kvs: alignment == nil ? 0 : 1)
        if let alignment { r.str("general.alignment"); r.u32(4); r.u32(alignment) }
        r.tensor("t", dims: dims, type: type, offset: offset)
        r.pad(to: Int(alignment ?? 32))
        r.zeros(data)
        return r.b
    }

    @Test func invalidShapes() {
        expectError(.invalidShape(tensor: "t", shape: [0], reason: "dimension out of range"), oneTensor([0]))
        expectError(.invalidShape(tensor: "t", shape: [4, 0], reason: "dimension out of range"), oneTensor([4, 0]))
        expectError(.invalidShape(tensor: "t", shape: [4, 1, 1, 0], reason: "dimension out of range"), oneTensor([4, 1, 1, 0]))
        expectError(.invalidShape(tensor: "t", shape: [.max], reason: "dimension out of range"), oneTensor([.max]))
        expectError(.invalidShape(tensor: "t", shape: [1 << 31], reason: "dimension out of range"), oneTensor([1 << 31]))
        // Each dimension in range, the product past Int64.
        let big = UInt64(Int32.max)
        expectError(.invalidShape(tensor: "t", shape: [big, big, big], reason: "element count overflows"), oneTensor([big, big, big]))
        expectError(.invalidShape(tensor: "t", shape: [big, big, big, big], reason: "element count overflows"),
                    oneTensor([big, big, big, big]))
        // No UInt64 overflow, but more elements than any byte size can describe (2^60 > Int.max / 8).
        expectError(.invalidShape(tensor: "t", shape: [1 << 30, 1 << 30], reason: "element count overflows"),
                    oneTensor([1 << 30, 1 << 30]))
        expectError(.invalidShape(tensor: "t", shape: [big, big, 4], reason: "element count overflows"), oneTensor([big, big, 4]))
        // Legal shape, absurd size: reported as out of bounds, not allocated.
        expectError(.tensorOutOfBounds(tensor: "t", offset: 0, size: Int(big) * (1 << 28) * 4, dataSize: 64),
                    oneTensor([big, 1 << 28], type: 0))
    }

    @Test func rowLengthMustBeWholeBlocks() {
        expectError(.invalidShape(tensor: "t", shape: [33, 2], reason: "row length not a multiple of Q4_0 block size 32"),
                    oneTensor([33, 2], type: 2))
        expectError(.invalidShape(tensor: "t", shape: [31], reason: "row length not a multiple of Q8_0 block size 32"),
                    oneTensor([31], type: 8))
        expectError(.invalidShape(tensor: "t", shape: [255, 4], reason: "row length not a multiple of Q4_K block size 256"),
                    oneTensor([255, 4], type: 12))
        expectError(.invalidShape(tensor: "t", shape: [1], reason: "row length not a multiple of Q6_K block size 256"),
                    oneTensor([1], type: 14))
        // Rows of whole blocks are fine whatever the other dimensions are.
        #expect(throws: Never.self) { try GGUFFile(bytes: oneTensor([32, 3], type: 2, data: 54)) }
    }

    @Test func misalignedOffsets() {
        expectError(.misalignedTensor(tensor: "t", offset: 4, alignment: 32), oneTensor([4], offset: 4))
        expectError(.misalignedTensor(tensor: "t", offset: 33, alignment: 32), oneTensor([4], offset: 33))
        expectError(.misalignedTensor(tensor: "t", offset: 32, alignment: 64), oneTensor([4], offset: 32, data: 128, alignment: 64))
        expectError(.misalignedTensor(tensor: "t", offset: .max, alignment: 32), oneTensor([4], offset: .max))
        // With alignment 1 any offset is aligned.
        #expect(throws: Never.self) { try GGUFFile(bytes: oneTensor([4], offset: 3, data: 19, alignment: 1)) }
    }

    @Test func tensorDataPastEnd() {
        expectError(.tensorOutOfBounds(tensor: "t", offset: 0, size: 4096, dataSize: 64), oneTensor([1024]))
        expectError(.tensorOutOfBounds(tensor: "t", offset: 32, size: 64, dataSize: 64), oneTensor([16], offset: 32))
        expectError(.tensorOutOfBounds(tensor: "t", offset: 96, size: 4, dataSize: 64), oneTensor([1], offset: 96))
        expectError(.tensorOutOfBounds(tensor: "t", offset: 1 << 62, size: 16, dataSize: 64), oneTensor([4], offset: 1 << 62))
        let top = UInt64.max & ~31
        expectError(.tensorOutOfBounds(tensor: "t", offset: top, size: 16, dataSize: 64), oneTensor([4], offset: top))
        // Ends exactly at EOF: fine.
        #expect(throws: Never.self) { try GGUFFile(bytes: oneTensor([16], offset: 0, data: 64)) }
        #expect(throws: Never.self) { try GGUFFile(bytes: oneTensor([8], offset: 32, data: 64)) }
        // No data section at all.
        var r = RawFile(tensors: 1, kvs: 0)
        r.tensor("t", dims: [1], type: 0, offset: 0)
        expectError(.tensorOutOfBounds(tensor: "t", offset: 0, size: 4, dataSize: 0), r.b)
        // The second of two tensors is the one past the end.
        var two = RawFile(tensors: 2, kvs: 0)
        two.tensor("a", dims: [8], type: 0, offset: 0)
        two.tensor("b", dims: [8], type: 0, offset: 32)
        two.pad(to: 32); two.zeros(40)
        expectError(.tensorOutOfBounds(tensor: "b", offset: 32, size: 32, dataSize: 40), two.b)
    }

    @Test func duplicates() {
        var w = GGUFWriter()
        w.add("a", .uint8(1)); w.add("b", .string("x")); w.add("a", .string("different type"))
        expectError(.duplicateKey("a"), w.bytes())
        var u = GGUFWriter()
        u.add("🦙", .uint8(1)); u.add("🦙", .uint8(1))
        expectError(.duplicateKey("🦙"), u.bytes())
        var t = GGUFWriter()
        t.add(tensor: randomTensor("x", [4], .f32, seed: 1))
        t.add(tensor: randomTensor("y", [4], .f32, seed: 2))
        t.add(tensor: randomTensor("x", [8], .f16, seed: 3))
        expectError(.duplicateTensor("x"), t.bytes())
        // Keys and tensor names live in separate namespaces.
        var s = GGUFWriter()
        s.add("x", .uint8(1))
        s.add(tensor: randomTensor("x", [4], .f32, seed: 1))
        #expect(throws: Never.self) { try GGUFFile(bytes: s.bytes()) }
    }

    @Test func badAlignmentValues() {
        for v: UInt32 in [0, 3, 6, 48, 65537, 1 << 17, 1 << 31, .max] {
            var w = GGUFWriter()
            w.add("general.alignment", .uint32(v))
            expectError(.badAlignment(UInt64(v)), w.bytes(), "\(v)")
        }
        let wrongTypes: [(GGUFValue, String)] = [
            (.uint64(32), "uint64"), (.int32(32), "int32"), (.uint16(32), "uint16"), (.string("32"), "string"),
            (.float32(32), "float32"), (.array(.uint32, [.uint32(32)]), "array"), (.bool(true), "bool"),
        ]
        for (v, name) in wrongTypes {
            var w = GGUFWriter()
            w.add("general.alignment", v)
            expectError(.wrongMetadataType(key: "general.alignment", expected: "uint32", found: name), w.bytes())
        }
    }

    @Test func invalidUTF8() {
        let bad: [[UInt8]] = [
            [0xFF], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xE2, 0x82], [0x61, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xF8, 0x88, 0x80, 0x80, 0x80],
        ]
        for s in bad {
            var k = RawFile(tensors: 0, kvs: 1)
            k.rawStr(s); k.u32(0); k.u8(1); k.zeros(16)
            expectError(.invalidString(what: "metadata key", offset: 24), k.b, "key \(s)")
            var v = RawFile(tensors: 0, kvs: 1)
            v.str("k"); v.u32(8); v.rawStr(s); v.zeros(16)
            expectError(.invalidString(what: "value of 'k'", offset: 37), v.b, "value \(s)")
            var a = RawFile(tensors: 0, kvs: 1)
            a.str("k"); a.u32(9); a.u32(8); a.u64(2); a.str("fine"); a.rawStr(s); a.zeros(16)
            expectError(.invalidString(what: "value of 'k'", offset: 61), a.b, "array \(s)")
            var t = RawFile(tensors: 1, kvs: 0)
            t.rawStr(s); t.u32(1); t.u64(1); t.u32(0); t.u64(0); t.pad(to: 32); t.zeros(32)
            expectError(.invalidString(what: "tensor name", offset: 24), t.b, "tensor \(s)")
        }
    }

    @Test func arrayNestingTooDeep() {
        // Nine levels written by GGUFWriter: the ninth (depth 8) starts at 40 + 12 * 8.
        var v = GGUFValue.array(.uint8, [])
        for _ in 0..<8 { v = .array(.array, [v]) }
        var w = GGUFWriter()
        w.add("deep", v)
        expectError(.absurdCount(what: "array nesting depth of 'deep'", count: 8, offset: 136), w.bytes())
        // Hand-made: a chain of a thousand nested arrays does not recurse a thousand deep.
        var r = RawFile(tensors: 0, kvs: 1)
        r.str("deep"); r.u32(9)
        for _ in 0..<1000 { r.u32(9); r.u64(1) }
        r.u32(0); r.u64(0)
        expectError(.absurdCount(what: "array nesting depth of 'deep'", count: 8, offset: 136), r.b)
    }

    @Test func fileSystemErrors() throws {
        let missing = "/nonexistent-\(UUID().uuidString)/model.gguf"
        #expect(throws: GGUFError.cannotOpen(path: missing, reason: "No such file or directory")) { try GGUFFile(path: missing) }
        let dir = NSTemporaryDirectory() + "swiftlet-dir-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: GGUFError.cannotOpen(path: dir, reason: "is a directory")) { try GGUFFile(path: dir) }
        let empty = tempPath("empty")
        #expect(FileManager.default.createFile(atPath: empty, contents: Data()))
        defer { try? FileManager.default.removeItem(atPath: empty) }
        #expect(throws: GGUFError.truncated(what: "header", offset: 0, needed: 24, available: 0)) { try GGUFFile(path: empty) }
        // Hostile content behaves the same through mmap as in memory.
        let junk = tempPath("junk")
        #expect(FileManager.default.createFile(atPath: junk, contents: Data("GGUF\u{3}".utf8)))
        defer { try? FileManager.default.removeItem(atPath: junk) }
        #expect(throws: GGUFError.truncated(what: "version", offset: 4, needed: 4, available: 1)) { try GGUFFile(path: junk) }
        let whole = writer().bytes()
        let cut = Array(whole.prefix(try GGUFFile(bytes: whole).dataOffset + 10))
        let cutPath = tempPath("cut")
        #expect(FileManager.default.createFile(atPath: cutPath, contents: Data(cut)))
        defer { try? FileManager.default.removeItem(atPath: cutPath) }
        #expect(throws: GGUFError.tensorOutOfBounds(tensor: "token_embd.weight", offset: 0, size: 108, dataSize: 10)) {
            try GGUFFile(path: cutPath)
        }
    }

    @Test func descriptionsNameWhatAndWhere() {
        let cases: [(GGUFError, [String])] = [
            (.cannotOpen(path: "/x.gguf", reason: "denied"), ["/x.gguf", "denied"]),
            (.badMagic(found: 0x4747_5546), ["not a GGUF file", "47475546", "offset 0"]),
            (.unsupportedVersion(4), ["version 4", "offset 4"]),
            (.truncated(what: "tensor name", offset: 120, needed: 8, available: 3), ["tensor name", "120", "8", "3"]),
            (.absurdCount(what: "metadata count", count: 99, offset: 16), ["metadata count", "99", "16"]),
            (.invalidString(what: "metadata key", offset: 24), ["UTF-8", "metadata key", "24"]),
            (.unknownValueType(13, key: "k", offset: 33), ["13", "'k'", "33"]),
            (.duplicateKey("a.b"), ["duplicate", "a.b"]),
            (.wrongMetadataType(key: "k", expected: "uint32", found: "string"), ["'k'", "uint32", "string"]),
            (.missingMetadata("llama.block_count"), ["missing", "llama.block_count"]),
            (.tooManyDimensions(tensor: "t", count: 5), ["'t'", "5"]),
            (.invalidShape(tensor: "t", shape: [33], reason: "row length"), ["'t'", "[33]", "row length"]),
            (.unknownTensorType(tensor: "t", type: 77), ["'t'", "77"]),
            (.duplicateTensor("w"), ["duplicate", "'w'"]),
            (.badAlignment(3), ["alignment", "3"]),
            (.misalignedTensor(tensor: "t", offset: 4, alignment: 32), ["'t'", "4", "32"]),
            (.tensorOutOfBounds(tensor: "t", offset: 64, size: 128, dataSize: 100), ["'t'", "64", "128", "100"]),
            (.missingTensor("output.weight"), ["missing", "output.weight"]),
        ]
        for (e, parts) in cases {
            for p in parts { #expect(e.description.contains(p), "\(e.description) lacks \(p)") }
        }
    }
}

// MARK: - Fuzzing

@Suite struct GGUFFuzzTests {
    /// A small valid file with every kind of structure the parser walks.
    private static let base: [UInt8] = {
        var w = GGUFWriter(version: 3)
        w.add("general.architecture", .string("llama"))
        w.add("general.alignment", .uint32(32))
        w.alignment = 32
        w.add("n", .uint32(7)); w.add("x", .float64(1.5)); w.add("b", .bool(true)); w.add("s", .string("ü🦙"))
        w.add("toks", .array(.string, [.string("<s>"), .string("a"), .string("é")]))
        w.add("ids", .array(.int32, [.int32(1), .int32(2)]))
        w.add("nest", .array(.array, [.array(.uint8, [.uint8(1)]), .array(.float32, [])]))
        w.add(tensor: randomTensor("w", [32, 2], .q4_0, seed: 1))
        w.add(tensor: randomTensor("v", [8], .f32, seed: 2))
        w.add(tensor: randomTensor("h", [4, 2], .f16, seed: 3))
        return w.bytes()
    }()

    /// A parse that succeeds must describe tensors that lie inside the file and can be read.
    private func checkInvariants(_ f: GGUFFile) {
        #expect(f.alignment > 0 && f.alignment & (f.alignment - 1) == 0)
        #expect(f.metadataKeys.count == f.metadata.count)
        for t in f.tensors {
            #expect(t.shape.count >= 1 && t.shape.count <= 4 && t.shape.allSatisfy { $0 > 0 })
            #expect(t.offset % f.alignment == 0)
            #expect(f.dataOffset + t.offset + t.byteCount <= f.fileSize)
            #expect(t.byteCount == t.type.rowBytes(t.shape[0])! * t.rowCount)
            _ = f.tensorData(t).reduce(0 as UInt8, &+)  // touches every byte
        }
    }

    @Test func twoThousandSeededMutations() {
        let base = Self.base
        #expect(throws: Never.self) { try GGUFFile(bytes: base) }
        var rng = SplitMix(state: 0x5EED_CAFE)
        var outcomes: [String: Int] = [:]
        let extremes: [UInt64] = [0, 1, 2, 8, 9, 13, 31, 32, 33, 63, 64, 255, 1 << 31, 1 << 32, 1 << 62, 1 << 63, .max, .max - 1]
        for iteration in 0..<2000 {
            var b = base
            for _ in 0..<(1 + rng.int(4)) {
                let i = rng.int(b.count)
                switch rng.int(8) {
                case 0: b[i] = UInt8(truncatingIfNeeded: rng.next())
                case 1: b[i] ^= UInt8(1 << rng.int(8))
                case 2: b[i] = 0xFF
                case 3: b[i] = 0
                case 4:  // overwrite a little-endian u64 or u32 with an extreme value
                    let v = extremes[rng.int(extremes.count)]
                    let width = rng.int(2) == 0 ? 4 : 8
                    for j in 0..<width where i + j < b.count { b[i + j] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(j))) }
                case 5: b.removeSubrange(i..<min(b.count, i + 1 + rng.int(8)))
                case 6: b.insert(contentsOf: [UInt8](repeating: UInt8(truncatingIfNeeded: rng.next()), count: 1 + rng.int(8)), at: i)
                default: b = Array(b.prefix(i))
                }
                if b.isEmpty { break }
            }
            do {
                let f = try GGUFFile(bytes: b)
                checkInvariants(f)
                outcomes["parsed", default: 0] += 1
            } catch let e as GGUFError {
                outcomes[Mirror(reflecting: e).children.first?.label ?? "\(e)", default: 0] += 1
            } catch {
                Issue.record("iteration \(iteration): non-GGUF error \(error)")
            }
        }
        #expect(outcomes.values.reduce(0, +) == 2000)
        // The mutations reach both outcomes and many different checks.
        #expect(outcomes["parsed", default: 0] > 0)
        #expect(outcomes.count >= 8, "\(outcomes)")
    }

    /// Every single-byte value at every header position: parse or GGUFError.
    @Test func everyByteValueInTheHeader() {
        let base = Self.base
        let f = try? GGUFFile(bytes: base)
        let limit = f?.dataOffset ?? 64
        for i in 0..<limit {
            for v in stride(from: 0, through: 255, by: 17) {
                var b = base
                b[i] = UInt8(v)
                do {
                    let g = try GGUFFile(bytes: b)
                    checkInvariants(g)
                } catch is GGUFError {
                } catch {
                    Issue.record("byte \(i) = \(v): \(error)")
                }
            }
        }
    }
}
