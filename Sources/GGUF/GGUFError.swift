/// Everything that can be wrong with a GGUF file. Each case says what and where (byte offset).
public enum GGUFError: Error, Equatable, Sendable, CustomStringConvertible {
    case cannotOpen(path: String, reason: String)
    case badMagic(found: UInt32)
    case unsupportedVersion(UInt32)
    case truncated(what: String, offset: Int, needed: Int, available: Int)
    case absurdCount(what: String, count: UInt64, offset: Int)
    case invalidString(what: String, offset: Int)
    case unknownValueType(UInt32, key: String, offset: Int)
    case duplicateKey(String)
    case wrongMetadataType(key: String, expected: String, found: String)
    case missingMetadata(String)
    case tooManyDimensions(tensor: String, count: UInt32)
    case invalidShape(tensor: String, shape: [UInt64], reason: String)
    case unknownTensorType(tensor: String, type: UInt32)
    case duplicateTensor(String)
    case badAlignment(UInt64)
    case misalignedTensor(tensor: String, offset: UInt64, alignment: Int)
    case tensorOutOfBounds(tensor: String, offset: UInt64, size: Int, dataSize: Int)
    case missingTensor(String)

    public var description: String {
        switch self {
        case .cannotOpen(let p, let r): "cannot open GGUF file '\(p)': \(r)"
        case .badMagic(let m):
            "not a GGUF file: bad magic 0x\(String(m, radix: 16)) at offset 0 (expected 0x46554747 'GGUF')"
        case .unsupportedVersion(let v): "unsupported GGUF version \(v) at offset 4 (supported: 2, 3)"
        case .truncated(let w, let o, let n, let a):
            "file truncated reading \(w) at offset \(o): needs \(n) bytes, \(a) left"
        case .absurdCount(let w, let c, let o): "absurd \(w) \(c) at offset \(o): larger than the file can hold"
        case .invalidString(let w, let o): "invalid UTF-8 in \(w) at offset \(o)"
        case .unknownValueType(let t, let k, let o): "unknown metadata value type \(t) for key '\(k)' at offset \(o)"
        case .duplicateKey(let k): "duplicate metadata key '\(k)'"
        case .wrongMetadataType(let k, let e, let f): "metadata '\(k)' has type \(f), expected \(e)"
        case .missingMetadata(let k): "missing required metadata '\(k)'"
        case .tooManyDimensions(let t, let c): "tensor '\(t)' has \(c) dimensions (at most 4 allowed)"
        case .invalidShape(let t, let s, let r): "tensor '\(t)' has invalid shape \(s): \(r)"
        case .unknownTensorType(let t, let ty): "tensor '\(t)' has unknown type \(ty)"
        case .duplicateTensor(let t): "duplicate tensor name '\(t)'"
        case .badAlignment(let a): "general.alignment \(a) is not a power of two between 1 and 65536"
        case .misalignedTensor(let t, let o, let a): "tensor '\(t)' data offset \(o) is not a multiple of alignment \(a)"
        case .tensorOutOfBounds(let t, let o, let s, let d):
            "tensor '\(t)' data [\(o), \(o) + \(s)) lies past the end of the data section (\(d) bytes)"
        case .missingTensor(let t): "missing tensor '\(t)'"
        }
    }
}
