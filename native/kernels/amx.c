// The correlation GEMM on Intel AMX (src/model/gemm.ts's `amx` backend): out[m×n] = A[m×k]·B[n×k]ᵀ, float32 in
// and out, on the bf16 tile units of Sapphire Rapids and later, which multiply ~16× faster than float32 FMA here.
// The same product serves the forward pass's weight products (amx_matmul, the AmxMatMul operator of ort.c).
//
// Float32 accuracy from bf16 tiles: each operand value x is split into three bf16 parts, x = h + m + l, each the
// nearest bf16 to what the earlier parts leave. The split is exact: h keeps x's top 8 significant bits, m the
// next 8, and what is left (≤ 8 bits) fits l. A product a·b is then the sum of the six part products
// hh + hm + mh + hl + lh + mm, each exact in float32 (8 × 8 bits), accumulated in float32 by the tile unit; the
// three left out (ml, lm, ll) are below 2^-23·|a·b| together. So each entry errs by at most (6k + 2)·2^-24·Σ|a·b|
// (Higham's bound for 6k float32 additions, plus the dropped parts), and in practice by about √(6k)·2^-24·Σ|a·b|:
// float32 GEMM accuracy. Measured on correlate shapes: 1.2× OpenBLAS per CPU second (bench/gemm.ts), splitting
// included.
//
// Operands are rows of float32 or float16 anywhere in memory: the correlate stage hands over an activation
// shard's blobs as they lie in the page cache, and the packing subtracts each row's shift and sums the shifted
// values on the way into the tiles (amxShiftedProduct), so no shifted float32 copy of the chunk is ever written.
//
// Two parts for float16 data, or on request. When both chunks are float16 (the stored mode's activations carry 11
// significant bits), or the caller asks (correlate.operand_bits: 16), each shifted value y = float32(x − shift) is
// kept as two parts, h + m: y rounded to 16 significant bits, |y − (h + m)| ≤ 2^-17·|y|, and the row sums are of
// h + m. Three part products, hh, mh and hm, each exact; the fourth, mm, is left out: |m| ≤ 2^-8·|y|, so it is at
// most 2^-16·|y·z|, as small as the rounding to 16 bits. Per entry: |error| ≤ (2^-15 + (3k + 2)·2^-24)·Σ|y·z|,
// 16× below the float16 data's own rounding. The work is 3/6 of float32's: two parts with four products measured
// 1.43× faster than three parts (session 11); three products 1.07–1.09× faster than four (session 18, the tiles
// aligned; ABBA order in one process). Float32 data keeps three parts and float32 accuracy unless asked.
//
// Layout: per block of KC tokens, A is packed as 16-row tiles [16][32 tokens] (natural) and B as the tile unit's
// pair-interleaved layout [16 token pairs][16 rows][2] (a 16 × 16 transpose of 32-bit pairs), one tile per part.
// A 2 × 2 block of 16 × 16 float32 accumulator tiles runs over the KC block; 8 such row blocks share each B strip
// while it sits in L2. The result does not depend on the thread count: each entry has one owner and one order.
#include "kernels.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__clang__) ? __clang_major__ >= 12 : __GNUC__ >= 11)
#define HAVE_AMX 1
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#ifdef HAVE_AMX
#define AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16,f16c")))

enum {
  TILE = 512,    // bf16 values per operand tile: 16 rows × 64 bytes
  PARTS = 3,     // h, m, l
  STEP = 32,     // tokens per tile
  KC = 16,       // steps per packed block (512 tokens) at correlate widths: measured 256–2048, 512 best
  PACKED_BYTES = 6 << 20,  // narrower operands take longer blocks, up to this size packed: fewer passes to set up
  GROUP = 8,     // 32-row blocks of A per B strip (measured 4–32)
};

static const char* amx_problem;  // why AMX cannot run here, or NULL; set once, when the module first loads

static void xgetbv0(uint32_t* lo, uint32_t* hi) { __asm__ volatile("xgetbv" : "=a"(*lo), "=d"(*hi) : "c"(0)); }

static const char* check_amx(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return "this CPU does not report its extended features";
  if (!(d & (1u << 24)) || !(d & (1u << 22))) return "this CPU has no AMX-BF16 tile unit";
  if (!(b & (1u << 16)) || !(b & (1u << 30)) || !(b & (1u << 31))) return "this CPU has no AVX-512";
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a & (1u << 5))) return "this CPU has no AVX512-BF16";
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return "the OS does not enable XSAVE";
  if (!(c & (1u << 29))) return "this CPU has no F16C";
  uint32_t lo, hi;
  xgetbv0(&lo, &hi);
  if ((lo & 0xe6) != 0xe6) return "the OS does not enable AVX-512 state";
  // Linux ≥ 5.16 hands out the 8 KiB tile state per process on request (ARCH_REQ_XCOMP_PERM, XTILEDATA = 18).
  if (syscall(SYS_arch_prctl, 0x1023, 18) != 0) return "the kernel does not grant the AMX tile state (Linux 5.16 or later needed)";
  return NULL;
}

static void check_once(void) { amx_problem = check_amx(); }

typedef struct {
  uint8_t palette, start_row, reserved[14];
  uint16_t bytes_per_row[16];
  uint8_t rows[16];
} TileConfig;

AMX_TARGET static void configure_tiles(void) {
  TileConfig config;
  memset(&config, 0, sizeof config);
  config.palette = 1;
  for (int t = 0; t < 8; t++) config.rows[t] = 16, config.bytes_per_row[t] = 64;
  _tile_loadconfig(&config);
}

// x → three bf16 parts, each the nearest bf16 to what the parts before it leave (x − h and x − h − m are exact).
AMX_TARGET static inline void split16(__m512 x, __m256i* h, __m256i* m, __m256i* l) {
  __m256bh hb = _mm512_cvtneps_pbh(x);
  __m512 r1 = _mm512_sub_ps(x, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)hb), 16)));
  __m256bh mb = _mm512_cvtneps_pbh(r1);
  __m512 r2 = _mm512_sub_ps(r1, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)mb), 16)));
  *h = (__m256i)hb, *m = (__m256i)mb, *l = (__m256i)_mm512_cvtneps_pbh(r2);
}

// One operand: `count` rows of float32 or float16 values, row r starting at byte rows[r] (any alignment): a
// Float32Array's rows, or the blobs of an activation shard as they lie in the page cache. With `shift`, the
// values multiplied are y = float32(x − shift[r]) (the subtraction in float64, one rounding), exactly as
// correlate.c's shift_row makes them, and `lanes` (16 doubles per row: Σy, Σy² by lane = token mod 8, added in
// token order) ends as shift_row's lane sums of the values multiplied.
typedef struct {
  const unsigned char* const* rows;
  int64_t count;
  int half;
  const double* shift;  // NULL: the values as they are
  double* lanes;        // NULL: no sums
} Operand;

// Lane sums of 16 values of a row (tokens t..t+7, then t+8..t+15), in shift_row's order.
AMX_TARGET static inline void add_lanes(double* lane, __m512 y) {
  const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(y));
  const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(y), 1)));
  __m512d s1 = _mm512_loadu_pd(lane), s2 = _mm512_loadu_pd(lane + 8);
  s1 = _mm512_add_pd(s1, lo), s2 = _mm512_add_pd(s2, _mm512_mul_pd(lo, lo));
  s1 = _mm512_add_pd(s1, hi), s2 = _mm512_add_pd(s2, _mm512_mul_pd(hi, hi));
  _mm512_storeu_pd(lane, s1), _mm512_storeu_pd(lane + 8, s2);
}

// 16 values of row `row` from token t (zeros past the operand's rows or the chunk's tokens), shifted.
AMX_TARGET static inline __m512 load16(const Operand* op, int64_t row, int64_t t, int64_t tokens) {
  if (row >= op->count || t >= tokens) return _mm512_setzero_ps();
  const __mmask16 mask = tokens - t >= 16 ? 0xffff : (__mmask16)((1u << (tokens - t)) - 1);
  const unsigned char* src = op->rows[row];
  __m512 x = op->half ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, src + 2 * t)) : _mm512_maskz_loadu_ps(mask, src + 4 * t);
  if (!op->shift) return x;
  const __m512d c = _mm512_set1_pd(op->shift[row]);
  __m512d lo = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(x)), c);
  __m512d hi = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1))), c);
  const __m512d both = _mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(_mm512_cvtpd_ps(lo))), _mm256_castps_pd(_mm512_cvtpd_ps(hi)), 1);
  return _mm512_maskz_mov_ps(mask, _mm512_castpd_ps(both));
}

// The value two bf16 parts hold: h + m, exact in float32 (m starts at most 8 bits below h's last bit).
AMX_TARGET static inline __m512 two_parts(__m256i h, __m256i m) {
  return _mm512_add_ps(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)),
                       _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(m), 16)));
}

typedef struct {
  const Operand* op;
  int64_t t0, tokens;        // the KC block starts at token t0 of a chunk of `tokens`
  int64_t block0, block1;    // 16-row blocks to pack
  int64_t steps;             // steps in this KC block
  uint16_t* dst;             // [16-row block][step][part][TILE]
  int pairs;                 // 0: natural tiles (A); 1: pair-interleaved tiles (B)
  int parts;                 // 3 (h, m, l: the value exactly) or 2 (h, m: rounded to 16 significant bits)
} PackJob;

AMX_TARGET static void* pack(void* arg) {
  const PackJob* j = arg;
  const int parts = j->parts;
  uint32_t pairs[PARTS][16][16];  // B: [part][row][token pair]
  for (int64_t block = j->block0; block < j->block1; block++) {
    for (int64_t s = 0; s < j->steps; s++) {
      uint16_t* tiles = j->dst + (block * j->steps + s) * parts * TILE;
      for (int r = 0; r < 16; r++) {
        const int64_t row = block * 16 + r;
        for (int half = 0; half < 2; half++) {
          const int64_t t = j->t0 + s * STEP + half * 16;
          __m256i part[PARTS];
          const __m512 y = load16(j->op, row, t, j->tokens);
          split16(y, &part[0], &part[1], &part[2]);
          // The sums are of the values the parts hold: y itself, or y rounded to h + m.
          if (j->op->lanes && row < j->op->count && t < j->tokens) add_lanes(j->op->lanes + row * 16, parts == 3 ? y : two_parts(part[0], part[1]));
          for (int p = 0; p < parts; p++) {
            void* to = j->pairs ? (void*)&pairs[p][r][half * 8] : (void*)(tiles + p * TILE + r * STEP + half * 16);
            _mm256_storeu_si256((__m256i*)to, part[p]);
          }
        }
      }
      if (!j->pairs) continue;
      uint32_t* out = (uint32_t*)tiles;  // tile row q = token pair q of the 16 rows
      for (int p = 0; p < parts; p++)
        for (int q = 0; q < 16; q++)
          for (int r = 0; r < 16; r++) out[p * 256 + q * 16 + r] = pairs[p][r][q];
    }
  }
  return NULL;
}

// Accumulator tiles 0–3 = C[rows a0|a1][cols b0|b1]; operand tiles 4–5 hold A parts, 6–7 B parts. In this order
// (three parts: 16 tile loads per step; the fewest, 14, measured no faster, the tiles aligned or not) a value
// times 1 adds up as (h + m) + l, which is exact: so A·I = A to the bit (the tests check it). h·h, l·h, m·h … would
// round h + l where h was rounded up.
#define DOT4 _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
AMX_TARGET static void block2x2(const uint16_t* a0, const uint16_t* a1, const uint16_t* b0, const uint16_t* b1, int64_t steps,
                                float* c, int64_t ldc, int first, int parts) {
  const int64_t stride = ldc * 4;
  if (first) {
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
  } else {
    _tile_loadd(0, c, stride); _tile_loadd(1, c + 16, stride); _tile_loadd(2, c + 16 * ldc, stride); _tile_loadd(3, c + 16 * ldc + 16, stride);
  }
  if (parts == 2) {
    for (int64_t s = 0; s < steps; s++, a0 += 2 * TILE, a1 += 2 * TILE, b0 += 2 * TILE, b1 += 2 * TILE) {
      _tile_loadd(4, a0, 64); _tile_loadd(5, a1, 64); _tile_loadd(6, b0, 64); _tile_loadd(7, b1, 64); DOT4  // h·h
      _tile_loadd(4, a0 + TILE, 64); _tile_loadd(5, a1 + TILE, 64); DOT4                                  // m·h
      _tile_loadd(4, a0, 64); _tile_loadd(5, a1, 64); _tile_loadd(6, b0 + TILE, 64); _tile_loadd(7, b1 + TILE, 64); DOT4  // h·m
    }
  } else {
    for (int64_t s = 0; s < steps; s++, a0 += 3 * TILE, a1 += 3 * TILE, b0 += 3 * TILE, b1 += 3 * TILE) {
      _tile_loadd(4, a0, 64); _tile_loadd(5, a1, 64); _tile_loadd(6, b0, 64); _tile_loadd(7, b1, 64); DOT4  // h·h
      _tile_loadd(4, a0 + TILE, 64); _tile_loadd(5, a1 + TILE, 64); DOT4                                  // m·h
      _tile_loadd(6, b0 + TILE, 64); _tile_loadd(7, b1 + TILE, 64); DOT4                                  // m·m
      _tile_loadd(4, a0, 64); _tile_loadd(5, a1, 64); DOT4                                                // h·m
      _tile_loadd(6, b0 + 2 * TILE, 64); _tile_loadd(7, b1 + 2 * TILE, 64); DOT4                          // h·l
      _tile_loadd(4, a0 + 2 * TILE, 64); _tile_loadd(5, a1 + 2 * TILE, 64); _tile_loadd(6, b0, 64); _tile_loadd(7, b1, 64); DOT4  // l·h
    }
  }
  _tile_stored(0, c, stride); _tile_stored(1, c + 16, stride); _tile_stored(2, c + 16 * ldc, stride); _tile_stored(3, c + 16 * ldc + 16, stride);
}

typedef struct {
  const uint16_t *a, *b;  // packed KC block
  int64_t steps, row_blocks, col_blocks;  // 32-row blocks of A and of B
  float* c;
  int64_t ldc;
  int first, upper_only, parts;
  int64_t pair0, pair1;  // this thread's run of block pairs
} ComputeJob;

AMX_TARGET static void run_block(const ComputeJob* j, int64_t rb, int64_t cb) {
  const int64_t span = j->steps * j->parts * TILE;  // one 16-row block's packed KC block
  const uint16_t *a = j->a + 2 * rb * span, *b = j->b + 2 * cb * span;
  block2x2(a, a + span, b, b + span, j->steps, j->c + rb * 32 * j->ldc + cb * 32, j->ldc, j->first, j->parts);
}

static int64_t block_pairs(const ComputeJob* j, int64_t first, int64_t end, int run);

AMX_TARGET static void* compute(void* arg) {
  const ComputeJob* j = arg;
  configure_tiles();
  block_pairs(j, j->pair0, j->pair1, 1);
  _tile_release();
  return NULL;
}

// The 2 × 2 tile blocks in cache order (GROUP row blocks per B strip), split into equal runs, one per thread.
static int64_t block_pairs(const ComputeJob* j, int64_t first, int64_t end, int run) {
  int64_t index = 0;
  for (int64_t g = 0; g < j->row_blocks; g += GROUP) {
    const int64_t g_end = g + GROUP < j->row_blocks ? g + GROUP : j->row_blocks;
    for (int64_t cb = j->upper_only ? g : 0; cb < j->col_blocks; cb++) {
      for (int64_t rb = g; rb < g_end; rb++) {
        if (j->upper_only && cb < rb) continue;
        if (run && index >= first && index < end) run_block(j, rb, cb);
        index++;
      }
    }
  }
  return index;
}

static void dispatch(const JobRunner* runner, void* (*fn)(void*), void* jobs, size_t size, int count) {
  if (runner) runner->run(runner, fn, jobs, size, count);
  else run_jobs(fn, jobs, size, count);
}

// Packed tiles (and padded accumulators) start on a page, so each 64-byte tile row is one cache line. malloc's
// 16-byte alignment put the rows across two lines: the product ran 1.26× slower on average, and alternated between
// 1.1× and 1.5× slower from call to call as malloc's offset changed (N = 6144, two parts; session 18). Callers'
// `out` rows are best on 64-byte boundaries too (src/stats/pearson.ts's chunk product): 6% faster.
static void* tile_rows(size_t bytes) {
  return aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
}

// out[m×n] = A·Bᵀ over k tokens, A and B as operands; symmetric (a == b) computes the upper triangle and mirrors it.
// Jobs run on run_jobs's threads, or through `runner` when given (then `threads` is its count).
static void amx_product(const Operand* a, const Operand* b, int64_t k, int parts, float* out, int threads, const JobRunner* runner) {
  const int symmetric = a == b;
  const int64_t m = a->count, n = b->count;
  const int64_t m32 = (m + 31) / 32 * 32, n32 = (n + 31) / 32 * 32;
  int64_t kc_steps = PACKED_BYTES / ((m32 + n32) * parts * 2 * STEP);
  const int64_t kc_tokens = (kc_steps < KC ? KC : kc_steps) * STEP;
  const int padded = m32 != m || n32 != n;
  float* c = padded ? tile_rows((size_t)(m32 * n32) * sizeof(float)) : out;
  uint16_t* pa = tile_rows((size_t)(m32 * kc_tokens * parts) * sizeof(uint16_t));
  uint16_t* pb = tile_rows((size_t)(n32 * kc_tokens * parts) * sizeof(uint16_t));
  if (!c || !pa || !pb) abort();  // tens of MB at most; V8 would not survive either
  if (threads > MAX_THREADS / 2) threads = MAX_THREADS / 2;
  Operand b_unsummed = *b;  // a symmetric product's rows are summed once, on the A side
  if (symmetric) b_unsummed.lanes = NULL;
  if (k == 0) memset(c, 0, (size_t)(m32 * n32) * sizeof(float));
  for (int64_t t0 = 0; t0 < k; t0 += kc_tokens) {
    const int64_t tokens = k - t0 < kc_tokens ? k - t0 : kc_tokens, steps = (tokens + STEP - 1) / STEP;
    PackJob packs[MAX_THREADS];
    int count = 0;
    for (int side = 0; side < 2; side++) {
      const int64_t blocks = (side ? n32 : m32) / 16;
      for (int t = 0; t < threads; t++) {
        packs[count++] = (PackJob){side ? &b_unsummed : a, t0, k, blocks * t / threads, blocks * (t + 1) / threads, steps, side ? pb : pa, side, parts};
      }
    }
    dispatch(runner, pack, packs, sizeof(PackJob), count);
    ComputeJob jobs[MAX_THREADS];
    const ComputeJob all = {pa, pb, steps, m32 / 32, n32 / 32, c, n32, t0 == 0, symmetric, parts, 0, 0};
    const int64_t pairs = block_pairs(&all, 0, 0, 0);
    for (int t = 0; t < threads; t++) jobs[t] = all, jobs[t].pair0 = pairs * t / threads, jobs[t].pair1 = pairs * (t + 1) / threads;
    dispatch(runner, compute, jobs, sizeof(ComputeJob), threads);
  }
  if (symmetric)
    for (int64_t i = 1; i < m; i++)
      for (int64_t j = 0; j < i; j++) c[i * n32 + j] = c[j * n32 + i];
  if (padded) {
    for (int64_t i = 0; i < m; i++) memcpy(out + i * n, c + i * n32, (size_t)n * sizeof(float));
    free(c);
  }
  free(pa);
  free(pb);
}

typedef struct {
  const Operand* op;
  int64_t first, end, tokens;
  double* shift;
} MeanJob;

// shift[r] = the mean of row r's values, summed as shift_row sums them with a zero shift (lanes, then pairwise), so
// that the first chunk's reference values are the ones the unfused path takes.
AMX_TARGET static void* row_means(void* arg) {
  const MeanJob* j = arg;
  for (int64_t r = j->first; r < j->end; r++) {
    __m512d s = _mm512_setzero_pd();
    for (int64_t t = 0; t < j->tokens; t += 8) {
      const __mmask8 mask = j->tokens - t >= 8 ? 0xff : (__mmask8)((1u << (j->tokens - t)) - 1);
      const unsigned char* src = j->op->rows[r];
      __m256 x = j->op->half ? _mm256_cvtph_ps(_mm_maskz_loadu_epi16(mask, src + 2 * t)) : _mm256_maskz_loadu_ps(mask, src + 4 * t);
      s = _mm512_add_pd(s, _mm512_cvtps_pd(x));
    }
    double lane[8];
    _mm512_storeu_pd(lane, s);
    j->shift[r] = (((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]))) / (double)j->tokens;
  }
  return NULL;
}

static void means_of_rows(const Operand* op, int64_t tokens, double* shift, int threads) {
  MeanJob jobs[MAX_THREADS];
  if (threads > op->count) threads = op->count > 0 ? (int)op->count : 1;
  for (int t = 0; t < threads; t++) jobs[t] = (MeanJob){op, op->count * t / threads, op->count * (t + 1) / threads, tokens, shift};
  run_jobs(row_means, jobs, sizeof(MeanJob), threads);
}

// Row sums from the lanes, combined as shift_row combines them; 0 when a row's sums are not finite.
static int finish_sums(const double* lanes, int64_t rows, double* sum, double* sum_sq) {
  int finite = 1;
  for (int64_t r = 0; r < rows; r++) {
    const double* l = lanes + r * 16;
    sum[r] = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
    sum_sq[r] = ((l[8] + l[9]) + (l[10] + l[11])) + ((l[12] + l[13]) + (l[14] + l[15]));
    if (!isfinite(sum[r]) || !isfinite(sum_sq[r])) finite = 0;
  }
  return finite;
}
#endif  // HAVE_AMX

// amxProblem() → null when the AMX GEMM runs here, else why not (one line).
static napi_value AmxProblem(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
#ifdef HAVE_AMX
  if (!amx_problem) return napi_get_null(env, &result) == napi_ok ? result : NULL;
  napi_create_string_utf8(env, amx_problem, NAPI_AUTO_LENGTH, &result);
#else
  napi_create_string_utf8(env, "the kernels addon was built without AMX support (needs x86-64 and GCC 11 or Clang 12)", NAPI_AUTO_LENGTH, &result);
#endif
  return result;
}

#ifdef HAVE_AMX
// Row pointers of a row-major float32 matrix, for amx_product.
static const unsigned char** float_rows(const float* data, int64_t rows, int64_t ld) {
  const unsigned char** starts = malloc(sizeof *starts * (size_t)(rows > 0 ? rows : 1));
  if (!starts) abort();
  for (int64_t r = 0; r < rows; r++) starts[r] = (const unsigned char*)(data + r * ld);
  return starts;
}
#endif

int amx_usable(void) {
#ifdef HAVE_AMX
  return amx_problem == NULL;
#else
  return 0;
#endif
}

int amx_matmul(const float* a, const float* b, int64_t m, int64_t n, int64_t k, float* out, const JobRunner* runner) {
#ifdef HAVE_AMX
  if (amx_problem) return 0;
  if (m == 0 || n == 0) return 1;
  const unsigned char** rows_a = float_rows(a, m, k);
  const unsigned char** rows_b = float_rows(b, n, k);
  const Operand op_a = {rows_a, m, 0, NULL, NULL}, op_b = {rows_b, n, 0, NULL, NULL};
  int threads = runner->threads < 1 ? 1 : runner->threads > MAX_THREADS / 2 ? MAX_THREADS / 2 : runner->threads;
  amx_product(&op_a, &op_b, k, 3, out, threads, runner);
  free(rows_b);
  free(rows_a);
  return 1;
#else
  (void)a, (void)b, (void)m, (void)n, (void)k, (void)out, (void)runner;
  return 0;
#endif
}

// amxGemm(a, b, m, n, k, out, threads): out[0, m·n) = A·Bᵀ (see the top of this file).
static napi_value AmxGemm(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  void *a, *b, *out;
  size_t a_length, b_length, out_length;
  int64_t m, n, k, threads;
  if (!get_args(env, info, 7, argv, "amxGemm(a, b, m, n, k, out, threads)") ||
      !typed_arg(env, argv[0], napi_float32_array, "a", &a, &a_length) || !typed_arg(env, argv[1], napi_float32_array, "b", &b, &b_length) ||
      !int_arg(env, argv[2], "m", &m) || !int_arg(env, argv[3], "n", &n) || !int_arg(env, argv[4], "k", &k) ||
      !typed_arg(env, argv[5], napi_float32_array, "out", &out, &out_length) || !int_arg(env, argv[6], "threads", &threads)) {
    return NULL;
  }
  if ((int64_t)a_length < m * k || (int64_t)b_length < n * k || (int64_t)out_length < m * n) {
    range_error(env, "gemm: operands too short for m=%lld n=%lld k=%lld: a has %zu (need %lld), b has %zu (need %lld), out has %zu (need %lld)",
                (long long)m, (long long)n, (long long)k, a_length, (long long)(m * k), b_length, (long long)(n * k), out_length, (long long)(m * n));
    return NULL;
  }
  const char *o = out, *o_end = o + m * n * 4;
  if ((o < (const char*)a + m * k * 4 && (const char*)a < o_end) || (o < (const char*)b + n * k * 4 && (const char*)b < o_end)) {
    range_error(env, "gemm: out overlaps a or b");
    return NULL;
  }
#ifdef HAVE_AMX
  if (amx_problem) {
    range_error(env, "gemm (amx): %s", amx_problem);
    return NULL;
  }
  if (m == 0 || n == 0) return NULL;
  const unsigned char** rows_a = float_rows(a, m, k);
  const unsigned char** rows_b = a == b && m == n ? rows_a : float_rows(b, n, k);
  const Operand op_a = {rows_a, m, 0, NULL, NULL}, op_b = {rows_b, n, 0, NULL, NULL};
  amx_product(&op_a, rows_b == rows_a ? &op_a : &op_b, k, 3, out, threads < 1 ? 1 : (int)threads, NULL);
  if (rows_b != rows_a) free(rows_b);
  free(rows_a);
#else
  range_error(env, "gemm (amx): not built");
#endif
  return NULL;
}

// A chunk's rows as JavaScript hands them over: {bytes: Uint8Array, offsets: Float64Array, bytesPerValue: 2 | 4}
// (src/stats/kernels.ts's BlobRows). Fills row pointers (malloc'd; the caller frees) after checking every blob
// lies inside `bytes`; 0 with a JS error thrown otherwise.
static int blob_rows_arg(napi_env env, napi_value value, const char* name, int64_t tokens, const unsigned char*** rows, int64_t* count, int* half) {
  napi_value bytes_value, offsets_value, width_value;
  unsigned char* bytes;
  double* offsets;
  size_t bytes_len, n;
  int64_t width;
  if (napi_get_named_property(env, value, "bytes", &bytes_value) != napi_ok || napi_get_named_property(env, value, "offsets", &offsets_value) != napi_ok ||
      napi_get_named_property(env, value, "bytesPerValue", &width_value) != napi_ok) {
    return range_error(env, "kernels: %s must be {bytes, offsets, bytesPerValue}", name);
  }
  if (!typed_arg(env, bytes_value, napi_uint8_array, "bytes", (void**)&bytes, &bytes_len) ||
      !typed_arg(env, offsets_value, napi_float64_array, "offsets", (void**)&offsets, &n) || !int_arg(env, width_value, "bytesPerValue", &width)) {
    return 0;
  }
  char what[16];
  snprintf(what, sizeof what, "%s blob", name);
  const unsigned char** starts = blob_starts(env, bytes, bytes_len, offsets, n, width, tokens, what);
  if (!starts) return 0;
  *rows = starts, *count = (int64_t)n, *half = width == 2;
  return 1;
}

// amxShiftedProduct(a, b, tokens, shiftA, shiftB, shiftFromChunk, out, sumA, sumSqA, sumB, sumSqB, threads,
// round16) → true, or false when a shifted value is not finite. a, b: BlobRows (b null: B is A, a symmetric product, and
// B's shift and sums are A's). out[i·n + j] = Σ_t x_i(t)·y_j(t) with x = float32(a − shiftA), y likewise, and
// sumA[i] = Σ_t x_i(t), sumSqA[i] = Σ_t x_i(t)², …: what shiftBlobs followed by amxGemm computes, in one pass
// over the chunk and without the shifted copies. With shiftFromChunk, each row's mean over this chunk is its
// shift, written into shiftA and shiftB first. With round16 (or when both are float16), two parts: the shifted
// values rounded to 16 significant bits (see the top of this file).
static napi_value AmxShiftedProduct(napi_env env, napi_callback_info info) {
  napi_value argv[13];
  if (!get_args(env, info, 13, argv, "amxShiftedProduct(a, b, tokens, shiftA, shiftB, shiftFromChunk, out, sumA, sumSqA, sumB, sumSqB, threads, round16)")) return NULL;
  int64_t tokens, from_chunk, threads, round16;
  napi_valuetype b_type;
  if (!int_arg(env, argv[2], "tokens", &tokens) || !int_arg(env, argv[5], "shiftFromChunk", &from_chunk) || !int_arg(env, argv[11], "threads", &threads) || !int_arg(env, argv[12], "round16", &round16) ||
      napi_typeof(env, argv[1], &b_type) != napi_ok) {
    return NULL;
  }
  const int symmetric = b_type == napi_null;
  double *vectors[6];  // shiftA, shiftB, sumA, sumSqA, sumB, sumSqB
  size_t lengths[6];
  const int vector_args[6] = {3, 4, 7, 8, 9, 10};
  const char* names[6] = {"shiftA", "shiftB", "sumA", "sumSqA", "sumB", "sumSqB"};
  for (int v = 0; v < 6; v++) {
    if (!typed_arg(env, argv[vector_args[v]], napi_float64_array, names[v], (void**)&vectors[v], &lengths[v])) return NULL;
  }
  float* out;
  size_t out_length;
  if (!typed_arg(env, argv[6], napi_float32_array, "out", (void**)&out, &out_length)) return NULL;
#ifdef HAVE_AMX
  if (amx_problem) {
    range_error(env, "gemm (amx): %s", amx_problem);
    return NULL;
  }
  const unsigned char **rows_a = NULL, **rows_b = NULL;
  int64_t m, n;
  int half_a, half_b;
  if (!blob_rows_arg(env, argv[0], "a", tokens, &rows_a, &m, &half_a)) return NULL;
  if (symmetric) {
    rows_b = rows_a, n = m, half_b = half_a;
  } else if (!blob_rows_arg(env, argv[1], "b", tokens, &rows_b, &n, &half_b)) {
    free(rows_a);
    return NULL;
  }
  double* lanes = calloc((size_t)(m + (symmetric ? 0 : n)) * 16 + 1, sizeof(double));
  int ok = lanes != NULL;
  if (!ok) {
    napi_throw_error(env, NULL, "kernels: out of memory");
  } else if ((int64_t)lengths[0] < m || (int64_t)lengths[2] < m || (int64_t)lengths[3] < m || (int64_t)out_length < m * n ||
             (!symmetric && ((int64_t)lengths[1] < n || (int64_t)lengths[4] < n || (int64_t)lengths[5] < n))) {
    ok = range_error(env, "kernels: shiftA, sumA and sumSqA need %lld values, shiftB, sumB and sumSqB %lld, out %lld", (long long)m, (long long)n, (long long)(m * n));
  }
  napi_value result = NULL;
  if (ok) {
    if (threads < 1) threads = 1;
    const Operand op_a = {rows_a, m, half_a, vectors[0], lanes}, op_b = {rows_b, n, half_b, vectors[1], lanes + m * 16};
    if (from_chunk) {
      means_of_rows(&op_a, tokens, vectors[0], (int)threads);
      if (!symmetric) means_of_rows(&op_b, tokens, vectors[1], (int)threads);
    }
    if (m > 0 && n > 0 && tokens > 0) amx_product(&op_a, symmetric ? &op_a : &op_b, tokens, round16 || (half_a && half_b) ? 2 : 3, out, (int)threads, NULL);
    else memset(out, 0, (size_t)(m * n) * sizeof(float));
    int finite = finish_sums(lanes, m, vectors[2], vectors[3]);
    if (!symmetric) finite &= finish_sums(lanes + m * 16, n, vectors[4], vectors[5]);
    napi_get_boolean(env, finite, &result);
  }
  free(lanes);
  if (rows_b != rows_a) free(rows_b);
  free(rows_a);
  return result;
#else
  (void)symmetric, (void)out, (void)out_length, (void)lengths;
  range_error(env, "gemm (amx): not built");
  return NULL;
#endif
}

napi_status register_amx(napi_env env, napi_value exports) {
#ifdef HAVE_AMX
  static pthread_once_t checked = PTHREAD_ONCE_INIT;  // worker threads load the module too
  pthread_once(&checked, check_once);
#endif
  napi_status s = define_function(env, exports, "amxProblem", AmxProblem);
  if (s == napi_ok) s = define_function(env, exports, "amxGemm", AmxGemm);
  return s == napi_ok ? define_function(env, exports, "amxShiftedProduct", AmxShiftedProduct) : s;
}
