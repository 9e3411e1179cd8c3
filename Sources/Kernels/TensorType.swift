import CKernels
import GGUF

public enum KernelError: Error, CustomStringConvertible, Sendable {
    case unsupportedType(tensor: String, type: GGMLType)
    case shapeMismatch(tensor: String, expected: [Int], found: [Int])

    public var description: String {
        switch self {
        case .unsupportedType(let t, let ty):
            "tensor '\(t)' has type \(ty), which has no compute kernel (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)"
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

    public init(name: String, type: GGMLType, rows: Int, columns: Int, data: UnsafeRawPointer) throws {
        guard ck_type_supported(Int32(type.rawValue)) != 0, type != .q8_1 else {
            throw KernelError.unsupportedType(tensor: name, type: type)
        }
        self.name = name
        self.type = type
        self.rows = rows
        self.columns = columns
        self.rowStride = ck_row_bytes(Int32(type.rawValue), Int32(columns))
        self.data = data
    }

    /// The activation format this matrix's dot products take.
    public var activationType: Int32 { ck_vec_dot_type(Int32(type.rawValue)) }
    public var activationRowBytes: Int { ck_row_bytes(activationType, Int32(columns)) }

    /// Dequantizes row `r` into `out` (`columns` floats).
    public func dequantizeRow(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        ck_dequantize_row(Int32(type.rawValue), data + r * rowStride, out, Int32(columns))
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
