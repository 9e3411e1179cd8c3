import CKernels
import Foundation
import GGUF
import Kernels
import Testing

/// The formats table (`formats.c`): every weight format a GGUF file may hold dequantizes to exactly
/// gguf-py's numbers, and the table's sizes agree with ggml's. Fixture: scripts/fixtures/make_quant_fixtures.py.
@Suite struct FormatTests {
    struct Fixture: Decodable {
        struct Format: Decodable {
            var type: Int32
            var elements: Int
            var bytes: String
            var bits: [UInt32]
        }
        var generator: String
        var formats: [String: Format]
    }

    static let fixture: Fixture = {
        let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("dequantize.json")
        return try! JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }()

    static func bytes(_ hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var it = hex.makeIterator()
        while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
        return out
    }

    @Test func everyFormatDequantizesToGgufPysBits() {
        let f = Self.fixture
        #expect(f.formats.count >= 11)
        for (name, format) in f.formats.sorted(by: { $0.key < $1.key }) {
            #expect(ck_type_known(format.type) != 0, "\(name) is in the table")
            #expect(String(cString: ck_type_name(format.type)) == name)
            let raw = Self.bytes(format.bytes)
            #expect(ck_row_bytes(format.type, Int32(format.elements)) == raw.count, "\(name) block bytes")
            var out = [Float](repeating: .nan, count: format.elements)
            raw.withUnsafeBytes { ck_dequantize_row(format.type, $0.baseAddress!, &out, Int32(format.elements)) }
            let first = zip(out, format.bits).enumerated().first { $0.element.0.bitPattern != $0.element.1 }
            #expect(first == nil, "\(name): element \(first?.offset ?? -1) is \(first?.element.0 ?? 0), gguf-py says \(Float(bitPattern: first?.element.1 ?? 0))")
        }
    }

    @Test func tableAgreesWithGgmlSizes() {
        // (type, elements per block, bytes per block) as ggml defines them.
        let ggml: [(Int32, Int32, Int)] = [(0, 1, 4), (1, 1, 2), (30, 1, 2), (2, 32, 18), (3, 32, 20), (6, 32, 22), (7, 32, 24),
                                           (8, 32, 34), (10, 256, 84), (11, 256, 110), (12, 256, 144), (13, 256, 176),
                                           (14, 256, 210), (20, 32, 18)]
        for (t, elements, bytes) in ggml {
            #expect(ck_type_block_elements(t) == elements, "type \(t)")
            #expect(ck_row_bytes(t, elements) == bytes, "type \(t)")
        }
        #expect(ck_type_known(99) == 0 && ck_type_name(99) == nil && ck_row_bytes(99, 32) == 0)
        // The weight formats with matrix products are the ones the error message lists.
        var types = [Int32](repeating: 0, count: 32)
        let n = Int(ck_weight_types(&types, 32))
        #expect(Set(types[..<n]) == Set([CK_TYPE_F32, CK_TYPE_F16, CK_TYPE_BF16, CK_TYPE_Q4_0, CK_TYPE_Q4_1, CK_TYPE_Q8_0,
                                         CK_TYPE_Q5_0, CK_TYPE_Q5_1, CK_TYPE_IQ4_NL, CK_TYPE_Q2_K, CK_TYPE_Q3_K,
                                         CK_TYPE_Q4_K, CK_TYPE_Q5_K, CK_TYPE_Q6_K].map { Int32($0) }))
        #expect(types[..<n].allSatisfy { ck_type_supported($0) != 0 })
        #expect(ck_type_supported(Int32(GGMLType.q8_K.rawValue)) == 0 && ck_type_supported(Int32(CK_TYPE_A16)) == 0)
    }

    /// A format without matrix products is refused by name, listing the ones that have them.
    @Test func weightsWithoutKernelsAreRefusedClearly() {
        let block = [UInt8](repeating: 0, count: 292)
        block.withUnsafeBytes { raw in
            do {
                _ = try WeightMatrix(name: "blk.0.ffn_down.weight", type: .q8_K, rows: 1, columns: 256, data: raw.baseAddress!)
                Issue.record("a Q8_K matrix was accepted")
            } catch {
                #expect("\(error)" == "tensor 'blk.0.ffn_down.weight' has type Q8_K, which has no compute kernel (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL)")
            }
        }
    }
}
