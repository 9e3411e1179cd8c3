import CKernels
import Foundation
import GGUF
#if canImport(Glibc)
import Glibc
#endif

public enum KernelError: Error, CustomStringConvertible, Sendable {
    /// The weight formats with matrix products, from the kernels' formats table.
    static var supportedTypes: String {
        var types = [Int32](repeating: 0, count: 64)
        let n = Int(ck_weight_types(&types, 64))
        return types[..<n].map { String(cString: ck_type_name($0)) }.joined(separator: ", ")
    }

    case unsupportedType(tensor: String, type: GGMLType)
    case shapeMismatch(tensor: String, expected: [Int], found: [Int])

    public var description: String {
        switch self {
        case .unsupportedType(let t, let ty):
            "tensor '\(t)' has type \(ty), which has no compute kernel (supported: \(Self.supportedTypes))"
        case .shapeMismatch(let t, let e, let f): "tensor '\(t)' has shape \(f), expected \(e)"
        }
    }
}

/// A 2-D weight matrix in its stored (possibly quantized) format: `rows` rows of `columns` elements.
public struct WeightMatrix: @unchecked Sendable {
    public let name: String
    public let type: GGMLType
    public let rows: Int
    public let columns: Int
    public let rowStride: Int
    public let data: UnsafeRawPointer
    /// The layout the kernels read `data` in: `type`, or its 8-row packed form (see `packed`).
    public let kernelType: Int32
    /// Owns `data` when it is a packed copy rather than the mapped file.
    private let storage: PackedStorage?

    /// F16 and F32 weights with f32 activations rather than activations rounded to f16 (encoders: closer to
    /// exact arithmetic, and a tiled kernel for prompt-sized batches). Other types are returned as they are.
    public func withFloatActivations() -> WeightMatrix {
        guard type == .f16 || type == .f32, !isPacked else { return self }
        return WeightMatrix(self, activationType: Int32(GGMLType.f32.rawValue))
    }

    private init(_ m: WeightMatrix, activationType: Int32) {
        name = m.name
        type = m.type
        rows = m.rows
        columns = m.columns
        rowStride = m.rowStride
        data = m.data
        kernelType = m.kernelType
        storage = m.storage
        self.activationType = activationType
    }

    public init(name: String, type: GGMLType, rows: Int, columns: Int, data: UnsafeRawPointer) throws {
        guard ck_type_supported(Int32(type.rawValue)) != 0 else {
            throw KernelError.unsupportedType(tensor: name, type: type)
        }
        self.name = name
        self.type = type
        self.rows = rows
        self.columns = columns
        self.rowStride = ck_row_bytes(Int32(type.rawValue), Int32(columns))
        self.data = data
        self.kernelType = Int32(type.rawValue)
        self.activationType = ck_vec_dot_type(Int32(type.rawValue))
        self.storage = nil
    }

    private init(packing m: WeightMatrix, as packedType: Int32, into storage: PackedStorage) {
        let out = storage.allocate(m.rows * m.rowStride)
        ck_pack_rows(Int32(m.type.rawValue), m.data, m.rowStride, Int32(m.rows), Int32(m.columns), out)
        name = m.name
        type = m.type
        rows = m.rows
        columns = m.columns
        rowStride = m.rowStride
        data = UnsafeRawPointer(out)
        kernelType = packedType
        activationType = m.activationType
        self.storage = storage
    }

    private init(panels m: WeightMatrix, into storage: PackedStorage) {
        let out = storage.allocate(m.panelByteCount).bindMemory(to: Float.self, capacity: ck_panel_floats(Int32(m.rows), Int32(m.columns)))
        ck_pack_panels(Int32(m.type.rawValue), m.data, m.rowStride, Int32(m.rows), Int32(m.columns), out)
        name = m.name
        type = m.type
        rows = m.rows
        columns = m.columns
        rowStride = m.columns * 4
        data = UnsafeRawPointer(out)
        kernelType = Int32(CK_TYPE_F32_P16)
        activationType = m.activationType
        self.storage = storage
    }

    /// Whether `floatPanels` would repack this matrix: F16 or F32 weights taking f32 activations.
    public var isPanelable: Bool {
        (type == .f16 || type == .f32) && activationType == Int32(GGMLType.f32.rawValue) && storage == nil
    }

    /// Bytes `floatPanels` needs, with alignment.
    public var panelByteCount: Int { (ck_panel_floats(Int32(rows), Int32(columns)) * 4 + 63) / 64 * 64 }

    /// This matrix as f32 panels of 16 rows for the f32-activation product (twice the bytes of F16), or itself
    /// when not `isPanelable`. Each result is one fused multiply-add chain over the columns in order.
    public func floatPanels(into storage: PackedStorage? = nil) -> WeightMatrix {
        guard isPanelable else { return self }
        return WeightMatrix(panels: self, into: storage ?? PackedStorage(capacity: panelByteCount))
    }

    var isPanels: Bool { kernelType == Int32(CK_TYPE_F32_P16) }

    /// Whether `packed` would repack this matrix on this CPU.
    public var isPackable: Bool {
        ck_packed_type(Int32(type.rawValue)) >= 0 && rows % 8 == 0 && storage == nil
    }

    /// This matrix copied into the 8-row interleaved layout the fastest kernels read (into `storage`,
    /// or memory of its own), or itself when not `isPackable`. Same size; results are identical.
    public func packed(into storage: PackedStorage? = nil) -> WeightMatrix {
        guard isPackable else { return self }
        let s = storage ?? PackedStorage(capacity: packedByteCount)
        return WeightMatrix(packing: self, as: ck_packed_type(Int32(type.rawValue)), into: s)
    }

    /// Rows `range` of an unpacked matrix, as a matrix of its own (a fused tensor's parts).
    public func rows(_ range: Range<Int>) throws -> WeightMatrix {
        precondition(!isPacked && range.lowerBound >= 0 && range.upperBound <= rows)
        return try WeightMatrix(name: name, type: type, rows: range.count, columns: columns, data: data + range.lowerBound * rowStride)
    }

    /// Bytes `packed` needs, with alignment.
    public var packedByteCount: Int { (rows * rowStride + 63) / 64 * 64 }

    public var isPacked: Bool { storage != nil }

    /// The activation format this matrix's dot products take (fixed when the matrix is made).
    public let activationType: Int32
    public var activationRowBytes: Int { ck_row_bytes(activationType, Int32(columns)) }

    /// Dequantizes row `r` into `out` (`columns` floats).
    public func dequantizeRow(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        if isPanels {
            ck_unpack_panel_row(data.assumingMemoryBound(to: Float.self), Int32(columns), Int32(r), out)
        } else if isPacked {
            withUnsafeTemporaryAllocation(byteCount: rowStride, alignment: 16) { row in
                ck_unpack_row(kernelType, data, Int32(columns), Int32(r), row.baseAddress!)
                ck_dequantize_row(Int32(type.rawValue), row.baseAddress!, out, Int32(columns))
            }
        } else {
            ck_dequantize_row(Int32(type.rawValue), data + r * rowStride, out, Int32(columns))
        }
    }
}

/// Memory for packed weight matrices, freed with the last matrix that uses it. One anonymous mapping
/// backed by huge pages where the system allows (weights are streamed every token: fewer TLB misses).
public final class PackedStorage: @unchecked Sendable {
    private let base: UnsafeMutableRawPointer
    private let capacity: Int
    private var used = 0
    private let lock = NSLock()

    public init(capacity: Int) {
        let huge = 2 << 20
        self.capacity = max(capacity, 1)
        let size = (self.capacity + huge - 1) / huge * huge
        let p = mmap(nil, size + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if let p, p != MAP_FAILED {
            // Align to a huge page; the slack before and after stays unused and untouched.
            let aligned = (Int(bitPattern: p) + huge - 1) / huge * huge
            base = UnsafeMutableRawPointer(bitPattern: aligned)!
            if getenv("SWIFTLET_NO_HUGEPAGES") == nil { madvise(base, size, MADV_HUGEPAGE) }
            mapping = (p, size + huge)
        } else {
            base = .allocate(byteCount: self.capacity, alignment: 64)
            mapping = nil
        }
    }

    private let mapping: (pointer: UnsafeMutableRawPointer, size: Int)?

    /// 64-byte aligned space for `bytes`; traps if the storage was sized too small (callers size it
    /// with the matrices' `packedByteCount`).
    func allocate(_ bytes: Int) -> UnsafeMutableRawPointer {
        lock.lock()
        defer { lock.unlock() }
        let n = (bytes + 63) / 64 * 64
        precondition(used + n <= capacity, "PackedStorage sized too small")
        let p = base + used
        used += n
        return p
    }

    deinit {
        if let mapping { munmap(mapping.pointer, mapping.size) } else { base.deallocate() }
    }
}

extension GGUFFile {
    /// The tensor as a weight matrix (shape [columns, rows]; a 1-D tensor is one row).
    public func weightMatrix(_ name: String, columns: Int? = nil, rows: Int? = nil) throws -> WeightMatrix {
        guard let info = tensorInfo(name) else { throw GGUFError.missingTensor(name) }
        let c = info.shape[0], r = info.rowCount
        if let columns, let rows, columns != c || rows != r || info.shape.count > 2 {
            throw KernelError.shapeMismatch(tensor: name, expected: [columns, rows], found: info.shape)
        }
        return try WeightMatrix(name: name, type: info.type, rows: r, columns: c, data: tensorData(info).baseAddress!)
    }

    /// A tensor converted to f32 (for norms and small vectors).
    public func floatVector(_ name: String, count: Int? = nil) throws -> [Float] {
        guard let info = tensorInfo(name) else { throw GGUFError.missingTensor(name) }
        if let count, info.elementCount != count {
            throw KernelError.shapeMismatch(tensor: name, expected: [count], found: info.shape)
        }
        let m = try weightMatrix(name)
        var out = [Float](repeating: 0, count: info.elementCount)
        out.withUnsafeMutableBufferPointer { buf in
            for r in 0..<m.rows { m.dequantizeRow(r, into: buf.baseAddress! + r * m.columns) }
        }
        return out
    }
}
