import Foundation
import GGUF
import Testing

/// A small valid file: every metadata type, two tensors, custom alignment.
func sampleWriter(version: UInt32 = 3, alignment: UInt32? = nil) -> GGUFWriter {
    var w = GGUFWriter(version: version)
    w.add("general.architecture", .string("llama"))
    if let alignment {
        w.add("general.alignment", .uint32(alignment))
        w.alignment = Int(alignment)
    }
    w.add("u8", .uint8(200)); w.add("i8", .int8(-5)); w.add("u16", .uint16(60000)); w.add("i16", .int16(-300))
    w.add("u32", .uint32(4_000_000_000)); w.add("i32", .int32(-70000)); w.add("f32", .float32(1.5))
    w.add("bool", .bool(true)); w.add("str", .string("héllo 🌍")); w.add("u64", .uint64(1 << 40))
    w.add("i64", .int64(-(1 << 40))); w.add("f64", .float64(-2.25))
    w.add("strs", .array(.string, [.string("a"), .string(""), .string("日本")]))
    w.add("ints", .array(.int32, [.int32(1), .int32(-2), .int32(3)]))
    w.add("nested", .array(.array, [.array(.uint8, [.uint8(1), .uint8(2)]), .array(.uint8, [])]))
    let f32 = (0..<8).flatMap { i in withUnsafeBytes(of: Float(i).bitPattern.littleEndian) { Array($0) } }
    w.add(tensor: .init(name: "vec", shape: [8], type: .f32, data: f32))
    w.add(tensor: .init(name: "q", shape: [64, 2], type: .q4_0, data: (0..<(2 * 2 * 18)).map { UInt8($0 % 251) }))
    return w
}

@Suite struct GGUFReaderTests {
    @Test(arguments: [UInt32(2), 3])
    func roundTripsEveryValueType(version: UInt32) throws {
        let w = sampleWriter(version: version)
        let f = try GGUFFile(bytes: w.bytes())
        #expect(f.version == version)
        #expect(f.metadataKeys == w.metadata.map(\.0))
        for (k, v) in w.metadata { #expect(f.metadata[k] == v, "\(k)") }
        #expect(try f.string("str") == "héllo 🌍")
        #expect(try f.int("u32") == 4_000_000_000)
        #expect(try f.int("i64") == -(1 << 40))
        #expect(try f.double("f32") == 1.5)
        #expect(try f.bool("bool") == true)
        #expect(try f.stringArray("strs") == ["a", "", "日本"])
        #expect(try f.intArray("ints") == [1, -2, 3])
        #expect(try f.floatArray("ints") == [1, -2, 3])
        #expect(try f.string("missing") == nil)
        #expect(throws: GGUFError.wrongMetadataType(key: "u8", expected: "string", found: "uint8")) { try f.string("u8") }
        #expect(throws: GGUFError.missingMetadata("nope")) { try f.requiredInt("nope") }
        #expect(throws: GGUFError.self) { try f.stringArray("ints") }
    }

    @Test func tensorInfosAndData() throws {
        let f = try GGUFFile(bytes: sampleWriter().bytes())
        #expect(f.alignment == 32)
        #expect(f.dataOffset % 32 == 0)
        let vec = try #require(f.tensorInfo("vec"))
        #expect(vec.shape == [8] && vec.type == .f32 && vec.byteCount == 32 && vec.rowCount == 1)
        let data = f.tensorData(vec)
        let floats = (0..<8).map { data.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
        #expect(floats == (0..<8).map(Float.init))
        let q = try #require(f.tensorInfo("q"))
        #expect(q.shape == [64, 2] && q.type == .q4_0 && q.byteCount == 72 && q.elementCount == 128)
        #expect(Array(f.tensorData(q)) == (0..<72).map { UInt8($0 % 251) })
        #expect(f.tensorInfo("absent") == nil)
    }

    @Test func customAlignment() throws {
        let f = try GGUFFile(bytes: sampleWriter(alignment: 64).bytes())
        #expect(f.alignment == 64 && f.dataOffset % 64 == 0)
        for t in f.tensors { #expect(t.offset % 64 == 0) }
    }

    @Test func memoryMappedFromDisk() throws {
        let path = NSTemporaryDirectory() + "gguf-\(UUID()).gguf"
        try Data(sampleWriter().bytes()).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let f = try GGUFFile(path: path)
        #expect(f.path == path && f.tensors.count == 2)
        #expect(try f.string("general.architecture") == "llama")
    }

    @Test func fileSystemErrors() throws {
        #expect(throws: GGUFError.self) { try GGUFFile(path: "/nonexistent/file.gguf") }
        #expect(throws: GGUFError.self) { try GGUFFile(path: NSTemporaryDirectory()) }
        let empty = NSTemporaryDirectory() + "empty-\(UUID()).gguf"
        FileManager.default.createFile(atPath: empty, contents: Data())
        defer { try? FileManager.default.removeItem(atPath: empty) }
        #expect(throws: GGUFError.self) { try GGUFFile(path: empty) }
    }
}

/// Hostile and broken files must throw the GGUFError that names the problem, never crash or allocate wildly.
@Suite struct GGUFHostileFileTests {
    func header(version: UInt32 = 3, tensors: UInt64, kvs: UInt64) -> [UInt8] {
        var b: [UInt8] = []
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
        u32(0x4655_4747); u32(version); u64(tensors); u64(kvs)
        return b
    }

    func append(_ b: inout [UInt8], u32 v: UInt32) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
    func append(_ b: inout [UInt8], u64 v: UInt64) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
    func append(_ b: inout [UInt8], string s: String) {
        append(&b, u64: UInt64(s.utf8.count))
        b.append(contentsOf: s.utf8)
    }

    @Test func badMagic() {
        var b = sampleWriter().bytes()
        b[0] = 0x46
        #expect(throws: GGUFError.badMagic(found: 0x4655_4746)) { try GGUFFile(bytes: b) }
        #expect(throws: GGUFError.self) { try GGUFFile(bytes: Array("not a model at all, just text".utf8)) }
    }

    @Test(arguments: [UInt32(1), 4, 0xFFFF_FFFF])
    func unsupportedVersion(version: UInt32) {
        #expect(throws: GGUFError.unsupportedVersion(version)) { try GGUFFile(bytes: header(version: version, tensors: 0, kvs: 0)) }
    }

    @Test func everyTruncationThrows() throws {
        let full = sampleWriter().bytes()
        let lastTensorEnd = full.count
        for n in 0..<lastTensorEnd {
            do {
                _ = try GGUFFile(bytes: Array(full.prefix(n)))
                // Only a cut inside trailing alignment padding can still be a complete file.
                let f = try GGUFFile(bytes: full)
                let end = f.dataOffset + f.tensors.map { $0.offset + $0.byteCount }.max()!
                #expect(n >= end, "prefix of \(n) bytes parsed")
            } catch is GGUFError {
            } catch {
                Issue.record("prefix \(n): unexpected error \(error)")
            }
        }
    }

    @Test func absurdCounts() {
        #expect(throws: GGUFError.absurdCount(what: "metadata count", count: .max, offset: 16)) {
            try GGUFFile(bytes: header(tensors: 0, kvs: .max))
        }
        #expect(throws: GGUFError.absurdCount(what: "tensor count", count: 1 << 40, offset: 8)) {
            try GGUFFile(bytes: header(tensors: 1 << 40, kvs: 0))
        }
        var b = header(tensors: 0, kvs: 1)
        append(&b, string: "arr")
        append(&b, u32: 9)
        append(&b, u32: 4)
        append(&b, u64: .max)
        b += [UInt8](repeating: 0, count: 64)
        #expect(throws: GGUFError.self) { try GGUFFile(bytes: b) }
        var s = header(tensors: 0, kvs: 1)
        append(&s, u64: .max)
        s += [UInt8](repeating: 0, count: 64)
        #expect(throws: GGUFError.self) { try GGUFFile(bytes: s) }
    }

    @Test func unknownValueType() {
        var b = header(tensors: 0, kvs: 1)
        append(&b, string: "k")
        append(&b, u32: 99)
        b += [UInt8](repeating: 0, count: 16)
        #expect(throws: GGUFError.unknownValueType(99, key: "k", offset: 33)) { try GGUFFile(bytes: b) }
    }

    @Test func invalidUTF8Key() {
        var b = header(tensors: 0, kvs: 1)
        append(&b, u64: 2)
        b += [0xFF, 0xFE]
        append(&b, u32: 0)
        b.append(1)
        b += [UInt8](repeating: 0, count: 16)
        #expect(throws: GGUFError.invalidString(what: "metadata key", offset: 24)) { try GGUFFile(bytes: b) }
    }

    @Test func deepNesting() {
        var b = header(tensors: 0, kvs: 1)
        append(&b, string: "deep")
        append(&b, u32: 9)
        for _ in 0..<20 {
            append(&b, u32: 9)
            append(&b, u64: 1)
        }
        b += [UInt8](repeating: 0, count: 64)
        #expect(throws: GGUFError.self) { try GGUFFile(bytes: b) }
    }

    @Test func duplicates() {
        var w = GGUFWriter()
        w.add("a", .uint8(1))
        w.add("a", .uint8(2))
        #expect(throws: GGUFError.duplicateKey("a")) { try GGUFFile(bytes: w.bytes()) }
        var t = GGUFWriter()
        t.add(tensor: .init(name: "x", shape: [4], type: .f32, data: [UInt8](repeating: 0, count: 16)))
        t.add(tensor: .init(name: "x", shape: [4], type: .f32, data: [UInt8](repeating: 0, count: 16)))
        #expect(throws: GGUFError.duplicateTensor("x")) { try GGUFFile(bytes: t.bytes()) }
    }

    @Test(arguments: [GGUFValue.uint32(0), .uint32(3), .uint32(1 << 20), .uint64(32), .string("32")])
    func badAlignment(value: GGUFValue) {
        var w = GGUFWriter()
        w.add("general.alignment", value)
        #expect(throws: GGUFError.self) { try GGUFFile(bytes: w.bytes()) }
    }

    /// A file with one tensor described by hand.
    func tensorFile(dims: [UInt64], type: UInt32, offset: UInt64 = 0, dataBytes: Int = 64) -> [UInt8] {
        var b = header(tensors: 1, kvs: 0)
        append(&b, string: "t")
        append(&b, u32: UInt32(dims.count))
        for d in dims { append(&b, u64: d) }
        append(&b, u32: type)
        append(&b, u64: offset)
        while b.count % 32 != 0 { b.append(0) }
        return b + [UInt8](repeating: 0, count: dataBytes)
    }

    @Test func tensorShapeAndTypeErrors() {
        #expect(throws: GGUFError.unknownTensorType(tensor: "t", type: 77)) { try GGUFFile(bytes: tensorFile(dims: [4], type: 77)) }
        #expect(throws: GGUFError.tooManyDimensions(tensor: "t", count: 5)) { try GGUFFile(bytes: tensorFile(dims: [1, 1, 1, 1, 1], type: 0)) }
        #expect(throws: GGUFError.tooManyDimensions(tensor: "t", count: 0)) { try GGUFFile(bytes: tensorFile(dims: [], type: 0)) }
        #expect(throws: GGUFError.self) { try GGUFFile(bytes: tensorFile(dims: [0, 4], type: 0)) }
        #expect(throws: GGUFError.self) { try GGUFFile(bytes: tensorFile(dims: [1 << 30, 1 << 30, 1 << 30], type: 0)) }
        #expect(throws: GGUFError.self) { try GGUFFile(bytes: tensorFile(dims: [.max], type: 0)) }
        #expect(throws: GGUFError.invalidShape(tensor: "t", shape: [33], reason: "row length not a multiple of Q4_0 block size 32")) {
            try GGUFFile(bytes: tensorFile(dims: [33], type: 2))
        }
        #expect(throws: GGUFError.misalignedTensor(tensor: "t", offset: 4, alignment: 32)) {
            try GGUFFile(bytes: tensorFile(dims: [4], type: 0, offset: 4))
        }
        #expect(throws: GGUFError.tensorOutOfBounds(tensor: "t", offset: 0, size: 4096, dataSize: 64)) {
            try GGUFFile(bytes: tensorFile(dims: [1024], type: 0))
        }
        #expect(throws: GGUFError.self) { try GGUFFile(bytes: tensorFile(dims: [4], type: 0, offset: 1 << 62)) }
        #expect(throws: Never.self) { try GGUFFile(bytes: tensorFile(dims: [16], type: 0)) }
    }

    @Test func errorsDescribeWhatAndWhere() {
        let e = GGUFError.truncated(what: "tensor name", offset: 120, needed: 8, available: 3)
        #expect("\(e)".contains("tensor name") && "\(e)".contains("120"))
        #expect("\(GGUFError.badMagic(found: 0x1234))".contains("not a GGUF file"))
    }

    /// Seeded random corruption of a valid file: each variant parses or throws GGUFError.
    @Test func randomMutationsNeverCrash() {
        let base = sampleWriter().bytes()
        var state: UInt64 = 0x9E37_79B9
        func next() -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int(state >> 33)
        }
        var parsed = 0
        for _ in 0..<2000 {
            var b = base
            for _ in 0..<(1 + next() % 4) {
                let i = next() % b.count
                switch next() % 3 {
                case 0: b[i] = UInt8(next() % 256)
                case 1: b[i] ^= 0x80
                default: b[i] = 0xFF
                }
            }
            do {
                _ = try GGUFFile(bytes: b)
                parsed += 1
            } catch is GGUFError {
            } catch {
                Issue.record("unexpected error type \(error)")
            }
        }
        #expect(parsed < 2000)
    }
}
