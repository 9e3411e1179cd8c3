#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Description of one tensor stored in a GGUF file. `shape[0]` is the contiguous (row) dimension.
public struct GGUFTensorInfo: Sendable {
    public let name: String
    public let shape: [Int]
    public let type: GGMLType
    /// Offset of the data relative to the start of the data section.
    public let offset: Int
    public let byteCount: Int
    public var elementCount: Int { shape.reduce(1, *) }
    /// Rows of `shape[0]` elements.
    public var rowCount: Int { shape.dropFirst().reduce(1, *) }
}

/// A memory-mapped GGUF file (versions 2 and 3). Every read is bounds-checked; malformed input throws `GGUFError`.
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let version: UInt32
    /// Metadata in file order.
    public let metadataKeys: [String]
    public let metadata: [String: GGUFValue]
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    /// Absolute file offset where tensor data begins.
    public let dataOffset: Int
    public let fileSize: Int

    private let tensorIndex: [String: Int]
    private let base: UnsafeRawPointer
    private let mapping: Mapping

    /// Owns the mmap (or heap copy) and releases it.
    private final class Mapping: @unchecked Sendable {
        let pointer: UnsafeMutableRawPointer?
        let size: Int
        let isMapped: Bool
        init(pointer: UnsafeMutableRawPointer?, size: Int, isMapped: Bool) {
            self.pointer = pointer
            self.size = size
            self.isMapped = isMapped
        }
        deinit {
            guard let pointer else { return }
            if isMapped { munmap(pointer, size) } else { pointer.deallocate() }
        }
    }

    /// Drops this process's mapped pages of `bytes` at `pointer` (inside the mapping) once their content
    /// has been copied elsewhere: they stop counting toward resident memory and are read back from the
    /// file if touched again. Partial pages at either end are kept. No effect on in-memory files.
    public func releasePages(_ pointer: UnsafeRawPointer, byteCount: Int) {
        guard mapping.isMapped, let start = mapping.pointer else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let lo = max(Int(bitPattern: pointer), Int(bitPattern: start))
        let hi = min(Int(bitPattern: pointer) + byteCount, Int(bitPattern: start) + mapping.size)
        let first = (lo + page - 1) / page * page, last = hi / page * page
        guard last > first, let p = UnsafeMutableRawPointer(bitPattern: first) else { return }
        madvise(p, last - first, Int32(MADV_DONTNEED))
    }

    /// Opens and memory-maps `path`.
    public convenience init(path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw GGUFError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw GGUFError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw GGUFError.cannotOpen(path: path, reason: "is a directory") }
        let size = Int(st.st_size)
        guard size > 0 else { throw GGUFError.truncated(what: "header", offset: 0, needed: 24, available: 0) }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw GGUFError.cannotOpen(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        try self.init(path: path, mapping: Mapping(pointer: p, size: size, isMapped: true))
    }

    /// Parses an in-memory copy of a GGUF file (used by tests and tools).
    public convenience init(bytes: [UInt8]) throws {
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
        bytes.withUnsafeBytes { src in if let b = src.baseAddress { p.copyMemory(from: b, byteCount: bytes.count) } }
        try self.init(path: "<memory>", mapping: Mapping(pointer: p, size: bytes.count, isMapped: false))
    }

    private init(path: String, mapping: Mapping) throws {
        self.path = path
        self.mapping = mapping
        self.base = UnsafeRawPointer(mapping.pointer!)
        self.fileSize = mapping.size
        var r = Reader(base: base, size: mapping.size)

        let magic = try r.u32("magic")
        guard magic == 0x4655_4747 else { throw GGUFError.badMagic(found: magic) }
        let version = try r.u32("version")
        guard version == 2 || version == 3 else { throw GGUFError.unsupportedVersion(version) }
        self.version = version
        let tensorCountOffset = r.offset
        let tensorCount = try r.u64("tensor count")
        let kvCountOffset = r.offset
        let kvCount = try r.u64("metadata count")
        // Each metadata entry takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info at least 8+4+8+4+8.
        guard kvCount <= UInt64(r.remaining / 13) else {
            throw GGUFError.absurdCount(what: "metadata count", count: kvCount, offset: kvCountOffset)
        }
        guard tensorCount <= UInt64(r.remaining / 32) else {
            throw GGUFError.absurdCount(what: "tensor count", count: tensorCount, offset: tensorCountOffset)
        }

        var keys: [String] = []
        var meta: [String: GGUFValue] = [:]
        keys.reserveCapacity(Int(kvCount))
        for _ in 0..<Int(kvCount) {
            let key = try r.string("metadata key")
            let typeOffset = r.offset
            let rawType = try r.u32("value type of '\(key)'")
            guard let type = GGUFValueType(rawValue: rawType) else {
                throw GGUFError.unknownValueType(rawType, key: key, offset: typeOffset)
            }
            let value = try r.value(type, key: key, depth: 0)
            guard meta[key] == nil else { throw GGUFError.duplicateKey(key) }
            meta[key] = value
            keys.append(key)
        }
        self.metadataKeys = keys
        self.metadata = meta

        var alignment = 32
        if let a = meta["general.alignment"] {
            guard case .uint32(let v) = a else {
                throw GGUFError.wrongMetadataType(key: "general.alignment", expected: "uint32", found: "\(a.type)")
            }
            guard v > 0, v <= 65536, v & (v - 1) == 0 else { throw GGUFError.badAlignment(UInt64(v)) }
            alignment = Int(v)
        }
        self.alignment = alignment

        struct RawInfo { let name: String; let shape: [Int]; let type: GGMLType; let offset: UInt64; let bytes: Int }
        var raws: [RawInfo] = []
        raws.reserveCapacity(Int(tensorCount))
        var index: [String: Int] = [:]
        for _ in 0..<Int(tensorCount) {
            let name = try r.string("tensor name")
            let nDims = try r.u32("dimension count of '\(name)'")
            guard nDims >= 1, nDims <= 4 else { throw GGUFError.tooManyDimensions(tensor: name, count: nDims) }
            var dims: [UInt64] = []
            for _ in 0..<Int(nDims) { dims.append(try r.u64("shape of '\(name)'")) }
            let typeRaw = try r.u32("type of '\(name)'")
            let offset = try r.u64("data offset of '\(name)'")
            guard let type = GGMLType(rawValue: typeRaw) else {
                throw GGUFError.unknownTensorType(tensor: name, type: typeRaw)
            }
            var count: UInt64 = 1
            for d in dims {
                guard d > 0, d <= UInt64(Int32.max) else {
                    throw GGUFError.invalidShape(tensor: name, shape: dims, reason: "dimension out of range")
                }
                let (m, o) = count.multipliedReportingOverflow(by: d)
                guard !o, m <= UInt64(Int.max / 8) else {
                    throw GGUFError.invalidShape(tensor: name, shape: dims, reason: "element count overflows")
                }
                count = m
            }
            let shape = dims.map { Int($0) }
            guard let rowBytes = type.rowBytes(shape[0]) else {
                throw GGUFError.invalidShape(
                    tensor: name, shape: dims, reason: "row length not a multiple of \(type) block size \(type.blockSize)")
            }
            let (bytes, o) = rowBytes.multipliedReportingOverflow(by: shape.dropFirst().reduce(1, *))
            guard !o else { throw GGUFError.invalidShape(tensor: name, shape: dims, reason: "byte size overflows") }
            guard offset % UInt64(alignment) == 0 else {
                throw GGUFError.misalignedTensor(tensor: name, offset: offset, alignment: alignment)
            }
            guard index[name] == nil else { throw GGUFError.duplicateTensor(name) }
            index[name] = raws.count
            raws.append(RawInfo(name: name, shape: shape, type: type, offset: offset, bytes: bytes))
        }

        let headerEnd = r.offset
        let dataStart = (headerEnd + alignment - 1) / alignment * alignment
        self.dataOffset = dataStart
        let dataSize = max(0, mapping.size - dataStart)
        var infos: [GGUFTensorInfo] = []
        infos.reserveCapacity(raws.count)
        for t in raws {
            guard t.offset <= UInt64(dataSize), t.bytes <= dataSize - Int(t.offset) else {
                throw GGUFError.tensorOutOfBounds(tensor: t.name, offset: t.offset, size: t.bytes, dataSize: dataSize)
            }
            infos.append(GGUFTensorInfo(name: t.name, shape: t.shape, type: t.type, offset: Int(t.offset), byteCount: t.bytes))
        }
        self.tensors = infos
        self.tensorIndex = index
    }

    // MARK: Tensors

    public func tensorInfo(_ name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    /// The raw bytes of a tensor, valid as long as this file object lives.
    public func tensorData(_ info: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + dataOffset + info.offset, count: info.byteCount)
    }

    // MARK: Typed metadata accessors

    public func string(_ key: String) throws -> String? {
        guard let v = metadata[key] else { return nil }
        guard let s = v.stringValue else { throw GGUFError.wrongMetadataType(key: key, expected: "string", found: "\(v.type)") }
        return s
    }

    public func int(_ key: String) throws -> Int? {
        guard let v = metadata[key] else { return nil }
        guard let i = v.intValue else { throw GGUFError.wrongMetadataType(key: key, expected: "integer", found: "\(v.type)") }
        return i
    }

    public func double(_ key: String) throws -> Double? {
        guard let v = metadata[key] else { return nil }
        guard let d = v.doubleValue else { throw GGUFError.wrongMetadataType(key: key, expected: "number", found: "\(v.type)") }
        return d
    }

    public func bool(_ key: String) throws -> Bool? {
        guard let v = metadata[key] else { return nil }
        guard let b = v.boolValue else { throw GGUFError.wrongMetadataType(key: key, expected: "bool", found: "\(v.type)") }
        return b
    }

    public func requiredInt(_ key: String) throws -> Int {
        guard let v = try int(key) else { throw GGUFError.missingMetadata(key) }
        return v
    }

    public func array(_ key: String) throws -> [GGUFValue]? {
        guard let v = metadata[key] else { return nil }
        guard let a = v.arrayValue else { throw GGUFError.wrongMetadataType(key: key, expected: "array", found: "\(v.type)") }
        return a
    }

    public func stringArray(_ key: String) throws -> [String]? {
        guard let a = try array(key) else { return nil }
        return try a.map {
            guard let s = $0.stringValue else {
                throw GGUFError.wrongMetadataType(key: key, expected: "array of string", found: "array of \($0.type)")
            }
            return s
        }
    }

    public func intArray(_ key: String) throws -> [Int]? {
        guard let a = try array(key) else { return nil }
        return try a.map {
            guard let i = $0.intValue else {
                throw GGUFError.wrongMetadataType(key: key, expected: "array of integer", found: "array of \($0.type)")
            }
            return i
        }
    }

    public func floatArray(_ key: String) throws -> [Float]? {
        guard let a = try array(key) else { return nil }
        return try a.map {
            guard let d = $0.doubleValue else {
                throw GGUFError.wrongMetadataType(key: key, expected: "array of number", found: "array of \($0.type)")
            }
            return Float(d)
        }
    }
}

/// Bounds-checked little-endian cursor over the mapped bytes.
struct Reader {
    let base: UnsafeRawPointer
    let size: Int
    var offset = 0
    var remaining: Int { size - offset }

    init(base: UnsafeRawPointer, size: Int) {
        self.base = base
        self.size = size
    }

    mutating func need(_ n: Int, _ what: @autoclosure () -> String) throws {
        guard n >= 0, n <= remaining else {
            throw GGUFError.truncated(what: what(), offset: offset, needed: n, available: remaining)
        }
    }

    mutating func scalar<T: FixedWidthInteger>(_ type: T.Type, _ what: @autoclosure () -> String) throws -> T {
        try need(MemoryLayout<T>.size, what())
        let v = base.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += MemoryLayout<T>.size
        return T(littleEndian: v)
    }

    mutating func u32(_ what: @autoclosure () -> String) throws -> UInt32 { try scalar(UInt32.self, what()) }
    mutating func u64(_ what: @autoclosure () -> String) throws -> UInt64 { try scalar(UInt64.self, what()) }

    mutating func string(_ what: @autoclosure () -> String) throws -> String {
        let start = offset
        let len = try u64("length of \(what())")
        guard len <= UInt64(remaining) else {
            throw GGUFError.truncated(what: what(), offset: offset, needed: Int(clamping: len), available: remaining)
        }
        let n = Int(len)
        let buf = UnsafeRawBufferPointer(start: base + offset, count: n)
        guard let s = String(validating: buf.bindMemory(to: UInt8.self), as: UTF8.self) else {
            throw GGUFError.invalidString(what: what(), offset: start)
        }
        offset += n
        return s
    }

    mutating func value(_ type: GGUFValueType, key: String, depth: Int) throws -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try scalar(UInt8.self, "value of '\(key)'"))
        case .int8: return .int8(try scalar(Int8.self, "value of '\(key)'"))
        case .uint16: return .uint16(try scalar(UInt16.self, "value of '\(key)'"))
        case .int16: return .int16(try scalar(Int16.self, "value of '\(key)'"))
        case .uint32: return .uint32(try scalar(UInt32.self, "value of '\(key)'"))
        case .int32: return .int32(try scalar(Int32.self, "value of '\(key)'"))
        case .uint64: return .uint64(try scalar(UInt64.self, "value of '\(key)'"))
        case .int64: return .int64(try scalar(Int64.self, "value of '\(key)'"))
        case .float32: return .float32(Float(bitPattern: try scalar(UInt32.self, "value of '\(key)'")))
        case .float64: return .float64(Double(bitPattern: try scalar(UInt64.self, "value of '\(key)'")))
        case .bool: return .bool(try scalar(UInt8.self, "value of '\(key)'") != 0)
        case .string: return .string(try string("value of '\(key)'"))
        case .array:
            guard depth < 8 else { throw GGUFError.absurdCount(what: "array nesting depth of '\(key)'", count: UInt64(depth), offset: offset) }
            let typeOffset = offset
            let raw = try u32("array element type of '\(key)'")
            guard let elem = GGUFValueType(rawValue: raw) else {
                throw GGUFError.unknownValueType(raw, key: key, offset: typeOffset)
            }
            let countOffset = offset
            let count = try u64("array length of '\(key)'")
            guard count <= UInt64(remaining / elem.minimumEncodedSize) else {
                throw GGUFError.absurdCount(what: "array length of '\(key)'", count: count, offset: countOffset)
            }
            var items: [GGUFValue] = []
            items.reserveCapacity(Int(count))
            for _ in 0..<Int(count) { items.append(try value(elem, key: key, depth: depth + 1)) }
            return .array(elem, items)
        }
    }
}
