import CKernels

/// A persistent pool of worker threads; every parallel kernel runs on one. Not reentrant: one caller at a time.
public final class ThreadPool: @unchecked Sendable {
    let raw: OpaquePointer
    public let threadCount: Int

    public init(threads: Int) {
        raw = ck_pool_create(Int32(max(1, threads)))
        threadCount = Int(ck_pool_size(raw))
    }

    deinit { ck_pool_destroy(raw) }

    /// Threads matching the machine's online cores.
    public static var defaultThreadCount: Int {
        #if canImport(Glibc)
        let n = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        return max(1, n)
        #else
        return 4
        #endif
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// What SIMD the kernels dispatch to on this machine.
public enum CPUFeatures {
    public static var hasAVX2: Bool { ck_has_avx2() != 0 }
    public static var hasAVX512: Bool { ck_has_avx512() != 0 }
    public static var description: String {
        hasAVX512 ? "AVX-512 (kernels use AVX2, 256-bit)" : hasAVX2 ? "AVX2 (256-bit)" : "scalar"
    }
}

extension ThreadPool {
    /// Measured streaming-read bandwidth (GB/s) with this pool's threads over a buffer of `bytes`.
    public func streamReadBandwidth(bytes: Int = 1 << 30, repeats: Int = 5) -> Double {
        ck_stream_read_gbs(raw, bytes, Int32(repeats))
    }
}
