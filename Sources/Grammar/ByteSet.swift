/// A set of bytes (256 bits).
public struct ByteSet: Sendable, Hashable {
    var bits: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    public init() {}

    public init(_ bytes: some Sequence<UInt8>) {
        for b in bytes { insert(b) }
    }

    public init(range: ClosedRange<UInt8>) {
        for b in range { insert(b) }
    }

    public static func == (a: ByteSet, b: ByteSet) -> Bool { a.bits == b.bits }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(bits.0)
        hasher.combine(bits.1)
        hasher.combine(bits.2)
        hasher.combine(bits.3)
    }

    @inline(__always)
    public func contains(_ b: UInt8) -> Bool {
        let bit = UInt64(1) << UInt64(b & 63)
        switch b >> 6 {
        case 0: return bits.0 & bit != 0
        case 1: return bits.1 & bit != 0
        case 2: return bits.2 & bit != 0
        default: return bits.3 & bit != 0
        }
    }

    public mutating func insert(_ b: UInt8) {
        let bit = UInt64(1) << UInt64(b & 63)
        switch b >> 6 {
        case 0: bits.0 |= bit
        case 1: bits.1 |= bit
        case 2: bits.2 |= bit
        default: bits.3 |= bit
        }
    }

    public mutating func remove(_ b: UInt8) {
        let bit = ~(UInt64(1) << UInt64(b & 63))
        switch b >> 6 {
        case 0: bits.0 &= bit
        case 1: bits.1 &= bit
        case 2: bits.2 &= bit
        default: bits.3 &= bit
        }
    }

    public func union(_ o: ByteSet) -> ByteSet {
        var r = self
        r.bits = (bits.0 | o.bits.0, bits.1 | o.bits.1, bits.2 | o.bits.2, bits.3 | o.bits.3)
        return r
    }

    public func subtracting(_ o: ByteSet) -> ByteSet {
        var r = self
        r.bits = (bits.0 & ~o.bits.0, bits.1 & ~o.bits.1, bits.2 & ~o.bits.2, bits.3 & ~o.bits.3)
        return r
    }

    public var isEmpty: Bool { bits == (0, 0, 0, 0) }

    public var members: [UInt8] { (0...255).compactMap { contains(UInt8($0)) ? UInt8($0) : nil } }
}
