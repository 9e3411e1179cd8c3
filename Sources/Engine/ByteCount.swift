import Foundation

/// Memory sizes as people write them (`--kv-cache-memory`, `kv_cache_memory:`): bytes, or a number with
/// KB/MB/GB (powers of 1000) or KiB/MiB/GiB.
public enum ByteCount {
    public static func parse(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces)
        let units: [(String, Double)] = [
            ("KiB", 1024), ("MiB", 1_048_576), ("GiB", 1_073_741_824), ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("B", 1),
        ]
        var number = t, scale = 1.0
        for (suffix, value) in units where t.uppercased().hasSuffix(suffix.uppercased()) {
            number = String(t.dropLast(suffix.count)).trimmingCharacters(in: .whitespaces)
            scale = value
            break
        }
        guard let v = Double(number), v.isFinite, v > 0, v * scale < 1e15 else { return nil }
        return Int(v * scale)
    }
}
