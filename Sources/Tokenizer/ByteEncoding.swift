/// GPT-2's reversible byte ↔ printable-character mapping used by byte-level BPE vocabularies:
/// printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100… in byte order.
enum ByteEncoding {
    /// Scalar value standing for each byte.
    static let scalarForByte: [UInt32] = {
        var map = [UInt32](repeating: 0, count: 256)
        var taken = [Bool](repeating: false, count: 256)
        for b in 0x21...0x7E { map[b] = UInt32(b); taken[b] = true }
        for b in 0xA1...0xAC { map[b] = UInt32(b); taken[b] = true }
        for b in 0xAE...0xFF { map[b] = UInt32(b); taken[b] = true }
        var n: UInt32 = 0
        for b in 0..<256 where !taken[b] {
            map[b] = 256 + n
            n += 1
        }
        return map
    }()

    /// Inverse of `scalarForByte`, indexed by scalar value (< 0x144); -1 where no byte maps there.
    static let byteForScalar: [Int16] = {
        var inv = [Int16](repeating: -1, count: 0x144)
        for (b, s) in scalarForByte.enumerated() { inv[Int(s)] = Int16(b) }
        return inv
    }()

    /// UTF-8 of the character standing for each byte.
    static let utf8ForByte: [[UInt8]] = scalarForByte.map { Array(String(Unicode.Scalar($0)!).utf8) }

    /// Decodes a byte-level BPE token's text to raw bytes; nil if some character is not in the map.
    static func decode(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for s in text.unicodeScalars {
            let v = Int(s.value)
            guard v < byteForScalar.count, byteForScalar[v] >= 0 else { return nil }
            out.append(UInt8(byteForScalar[v]))
        }
        return out
    }
}
