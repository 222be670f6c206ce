// FP32 peak probe for bench/gemm.ts: `peak THREADS WIDTH SECONDS` runs THREADS threads of 12 independent FMA
// chains on WIDTH-bit vectors (512: AVX-512, 256: AVX2) and prints two GFLOP/s figures: per wall-clock second,
// and per CPU second summed over the threads (what one core does while it is scheduled, which other jobs on a
// shared machine change far less). Twelve chains cover the FMA latency (4 cycles) × throughput (2 per cycle)
// of current x86 cores, so the loop is bound by FMA issue alone.
// Not part of the addon; the bench compiles it with `cc -O2 -march=native` when a compiler is at hand.
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(clockid_t clock) {
  struct timespec t;
  clock_gettime(clock, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static volatile float sink;
static long iterations;

// Each chain starts from a different value: identical chains would be merged into one by the compiler
// (common subexpressions), leaving a latency-bound loop and a reported rate 12× too high.
#define CHAINS(T, SET, FMA)                                                                             \
  T c0 = SET(0.f), c1 = SET(1.f), c2 = SET(2.f), c3 = SET(3.f), c4 = SET(4.f), c5 = SET(5.f),            \
    c6 = SET(6.f), c7 = SET(7.f), c8 = SET(8.f), c9 = SET(9.f), c10 = SET(10.f), c11 = SET(11.f);       \
  for (long i = 0; i < iterations; i++) {                                                              \
    c0 = FMA(x, y, c0); c1 = FMA(x, y, c1); c2 = FMA(x, y, c2); c3 = FMA(x, y, c3);                     \
    c4 = FMA(x, y, c4); c5 = FMA(x, y, c5); c6 = FMA(x, y, c6); c7 = FMA(x, y, c7);                     \
    c8 = FMA(x, y, c8); c9 = FMA(x, y, c9); c10 = FMA(x, y, c10); c11 = FMA(x, y, c11);                 \
  }

#ifdef __AVX512F__
static void* run512(void* unused) {
  (void)unused;
  __m512 x = _mm512_set1_ps(1.0000001f), y = _mm512_set1_ps(0.9999999f);
  CHAINS(__m512, _mm512_set1_ps, _mm512_fmadd_ps)
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                           _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
  s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
  sink = _mm512_reduce_add_ps(s);
  return NULL;
}
#endif

static void* run256(void* unused) {
  (void)unused;
  __m256 x = _mm256_set1_ps(1.0000001f), y = _mm256_set1_ps(0.9999999f);
  CHAINS(__m256, _mm256_set1_ps, _mm256_fmadd_ps)
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                           _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
  s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
  float lanes[8];
  _mm256_storeu_ps(lanes, s);
  sink = lanes[0];
  return NULL;
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: peak THREADS WIDTH(256|512) SECONDS\n");
    return 2;
  }
  int threads = atoi(argv[1]), width = atoi(argv[2]);
  double seconds = atof(argv[3]);
  void* (*run)(void*) = run256;
#ifdef __AVX512F__
  if (width == 512) run = run512;
#else
  if (width == 512) {
    fprintf(stderr, "peak: built without AVX-512\n");
    return 3;
  }
#endif
  if (threads < 1 || threads > 256 || (width != 256 && width != 512)) return 2;
  pthread_t pool[256];
  // Calibrate the iteration count on one thread, then time the real run.
  iterations = 1000000;
  double t0 = now(CLOCK_MONOTONIC);
  run(NULL);
  iterations = (long)(iterations * seconds / (now(CLOCK_MONOTONIC) - t0)) + 1;
  t0 = now(CLOCK_MONOTONIC);
  double c0 = now(CLOCK_PROCESS_CPUTIME_ID);
  for (int i = 0; i < threads; i++) pthread_create(&pool[i], NULL, run, NULL);
  for (int i = 0; i < threads; i++) pthread_join(pool[i], NULL);
  double wall = now(CLOCK_MONOTONIC) - t0, cpu = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
  double flops = (double)threads * iterations * 12 * (width / 32) * 2;
  printf("%.2f %.2f\n", flops / wall / 1e9, flops / cpu / 1e9);
  return 0;
}
