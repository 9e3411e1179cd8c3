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
    /// Kernel instruction sets, slowest first.
    public enum ISA: Int32, CaseIterable, Sendable {
        case generic = 0, avx2 = 1, avx512vnni = 2

        public var name: String {
            switch self {
            case .generic: "generic"
            case .avx2: "avx2"
            case .avx512vnni: "avx512vnni"
            }
        }
    }

    public static var hasAVX2: Bool { ck_has_avx2() != 0 }
    public static var hasAVX512: Bool { ck_has_avx512() != 0 }
    /// The instruction set the kernels use now.
    public static var isa: ISA { ISA(rawValue: ck_isa()) ?? .generic }

    /// Makes the kernels use at most `isa` (to measure a smaller machine's path); before loading a model.
    public static func limit(to isa: ISA) { ck_set_isa_limit(isa.rawValue) }

    public static var description: String {
        switch isa {
        case .avx512vnni: "AVX-512 VNNI (256-bit kernels)"
        case .avx2: hasAVX512 ? "AVX2 (256-bit; AVX-512 present, limited)" : "AVX2 (256-bit)"
        case .generic: "scalar"
        }
    }
}

extension ThreadPool {
    /// Measured streaming-read bandwidth (GB/s) with this pool's threads over a buffer of `bytes`.
    public func streamReadBandwidth(bytes: Int = 1 << 30, repeats: Int = 5) -> Double {
        ck_stream_read_gbs(raw, bytes, Int32(repeats))
    }
}

extension ThreadPool {
    /// Runs `body(item, thread)` for every item in `0..<count`, shared out over the pool's threads
    /// (`thread` < `threadCount`, so per-thread buffers can be indexed by it); returns when all ran.
    public func forEach(_ count: Int, _ body: (Int, Int) -> Void) {
        guard count > 0 else { return }
        if count == 1 || threadCount == 1 {
            for i in 0..<count { body(i, 0) }
            return
        }
        withoutActuallyEscaping(body) { body in
            var job = ForEachJob(count: count, body: body)
            withUnsafeMutablePointer(to: &job) { ptr in
                ck_pool_run(raw, { ctx, ith, nth in
                    let job = ctx!.assumingMemoryBound(to: ForEachJob.self)
                    var i = Int(ith)
                    while i < job.pointee.count {
                        job.pointee.body(i, Int(ith))
                        i += Int(nth)
                    }
                }, ptr)
            }
        }
    }
}

private struct ForEachJob {
    let count: Int
    let body: (Int, Int) -> Void
}
