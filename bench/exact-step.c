// Execution-pipe costs on this CPU, registers only (needs AVX-512 VL + VNNI):
// - the reference's block step: vpdpbusd (4-byte lane sums of 32 weights times one activation row),
//   vcvtdq2ps, vfmadd231ps into the lane accumulators, as llama.cpp's Q4_1/Q8_0 dot products do per
//   block and per row (Swiftlet's kernels did until 2026-11-30);
// - vpdpbusd alone: Swiftlet's kernels now spend 8 of them (16 with 16-bit activations) per block of
//   8 rows, and one conversion and multiply-add for all 8.
// 16 independent operations per iteration.
// The clock comes from a chain of dependent integer adds (one per cycle).
//   cc -O2 bench/exact-step.c -o /tmp/exact-step && /tmp/exact-step
#include <stdio.h>
#include <time.h>
#define STEP(t, a) "vpxord %%ymm" #t ",%%ymm" #t ",%%ymm" #t "\n vpdpbusd %%ymm30,%%ymm31,%%ymm" #t "\n" \
    " vcvtdq2ps %%ymm" #t ",%%ymm" #t "\n vfmadd231ps %%ymm" #t ",%%ymm29,%%ymm" #a "\n"
static double seconds(struct timespec a, struct timespec b) {
    return (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
}

int main(void) {
    const long n = 100000000;
    struct timespec t0, t1;
    long x = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    __asm__ volatile("mov %1, %%rcx\n1:\n add $1, %0\n add $1, %0\n add $1, %0\n add $1, %0\n dec %%rcx\n jnz 1b\n"
                     : "+r"(x) : "r"(n) : "rcx");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double ghz = 4.0 * (double)n / seconds(t0, t1) / 1e9;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    __asm__ volatile("vpxord %%xmm29,%%xmm29,%%xmm29\n vpxord %%xmm30,%%xmm30,%%xmm30\n vpxord %%xmm31,%%xmm31,%%xmm31\n"
                     "mov %0, %%rcx\n1:\n"
                     STEP(0, 16) STEP(1, 17) STEP(2, 18) STEP(3, 19) STEP(4, 20) STEP(5, 21) STEP(6, 22) STEP(7, 23)
                     STEP(8, 24) STEP(9, 25) STEP(10, 26) STEP(11, 27) STEP(12, 16) STEP(13, 17) STEP(14, 18) STEP(15, 19)
                     " dec %%rcx\n jnz 1b\n" :: "r"(n) : "rcx", "memory");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double s = seconds(t0, t1);
    printf("reference block step: %.2f ns, %.2f cycles at %.2f GHz per 16 steps\n", 1e9 * s / n, s * ghz * 1e9 / n, ghz);
#define DP(t) " vpdpbusd %%ymm30,%%ymm31,%%ymm" #t "\n"
    clock_gettime(CLOCK_MONOTONIC, &t0);
    __asm__ volatile("mov %0, %%rcx\n1:\n"
                     DP(0) DP(1) DP(2) DP(3) DP(4) DP(5) DP(6) DP(7) DP(8) DP(9) DP(10) DP(11) DP(12) DP(13) DP(14) DP(15)
                     " dec %%rcx\n jnz 1b\n" :: "r"(n) : "rcx", "memory");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double d = seconds(t0, t1);
    printf("vpdpbusd alone: %.2f ns, %.2f cycles per 16\n", 1e9 * d / n, d * ghz * 1e9 / n);
    return 0;
}
