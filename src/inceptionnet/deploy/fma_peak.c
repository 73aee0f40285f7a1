/* Peak FMA throughput of this CPU (docs/BENCHMARKS.md): how many GFLOP/s the cores can do at all.
 *
 *   gcc -O3 -march=native -fopenmp src/inceptionnet/deploy/fma_peak.c -o /tmp/fma_peak && OMP_NUM_THREADS=2 /tmp/fma_peak
 *
 * Each thread runs 12 independent chains of AVX-512 fp32 FMAs (vfmadd: 16 lanes x 2 FLOP) and, where
 * the CPU has AVX512-BF16, of bf16 dot products (vdpbf16ps: 16 lanes x 2 pairs x 2 FLOP) and, where
 * it has AVX512-VNNI, of int8 dot products (vpdpbusd: 16 lanes x 4 u8*s8 pairs x 2 OP), enough chains
 * to hide the instruction latency; no memory traffic. A convolution cannot run faster than this.
 * (Package data: `inceptionnet bench` compiles it on first use into ~/.cache/inceptionnet with gcc or cc
 * and runs it; inceptionnet.deploy.probe.fma_peak, which says why when it cannot.)
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>

#define CHAINS 12
static const long ITERS = 200000000L / CHAINS;

static double fp32_run(void) {
    double t0 = omp_get_wtime();
#pragma omp parallel
    {
        __m512 acc[CHAINS];
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
        const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
        for (long it = 0; it < ITERS; it++)
#pragma GCC unroll 12
            for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
        float s = 0;
        for (int i = 0; i < CHAINS; i++) s += _mm512_reduce_add_ps(acc[i]);
        if (s == 12345.f) printf("%f\n", s);  /* keep the result alive */
    }
    double secs = omp_get_wtime() - t0;
    return (double)omp_get_max_threads() * ITERS * CHAINS * 16 * 2 / secs / 1e9;
}

#ifdef __AVX512BF16__
static double bf16_run(void) {
    double t0 = omp_get_wtime();
#pragma omp parallel
    {
        __m512 acc[CHAINS];
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
        const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3380);
        for (long it = 0; it < ITERS; it++)
#pragma GCC unroll 12
            for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
        float s = 0;
        for (int i = 0; i < CHAINS; i++) s += _mm512_reduce_add_ps(acc[i]);
        if (s == 12345.f) printf("%f\n", s);
    }
    double secs = omp_get_wtime() - t0;
    return (double)omp_get_max_threads() * ITERS * CHAINS * 16 * 4 / secs / 1e9;
}
#endif

#ifdef __AVX512VNNI__
static double int8_run(void) {
    double t0 = omp_get_wtime();
#pragma omp parallel
    {
        __m512i acc[CHAINS];
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_epi32(i);
        const __m512i a = _mm512_set1_epi8(1), b = _mm512_set1_epi8(-1);
        for (long it = 0; it < ITERS; it++)
#pragma GCC unroll 12
            for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
        int s = 0;
        for (int i = 0; i < CHAINS; i++) s += _mm512_reduce_add_epi32(acc[i]);
        if (s == 12345) printf("%d\n", s);
    }
    double secs = omp_get_wtime() - t0;
    return (double)omp_get_max_threads() * ITERS * CHAINS * 16 * 8 / secs / 1e9;
}
#endif

int main(void) {
    double best32 = 0, best16 = 0, best8 = 0;
    for (int r = 0; r < 5; r++) {
        double g = fp32_run();
        if (g > best32) best32 = g;
#ifdef __AVX512BF16__
        g = bf16_run();
        if (g > best16) best16 = g;
#endif
#ifdef __AVX512VNNI__
        g = int8_run();
        if (g > best8) best8 = g;
#endif
    }
    printf("{\"threads\": %d, \"fp32_fma_gflops\": %.1f, \"bf16_dot_gflops\": %.1f, \"int8_vnni_gops\": %.1f}\n",
           omp_get_max_threads(), best32, best16, best8);
    return 0;
}
