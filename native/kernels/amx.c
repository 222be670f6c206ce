// The correlation GEMM on Intel AMX (src/model/gemm.ts's `amx` backend): out[m×n] = A[m×k]·B[n×k]ᵀ, float32 in
// and out, on the bf16 tile units of Sapphire Rapids and later, which multiply ~16× faster than float32 FMA here.
//
// Float32 accuracy from bf16 tiles: each operand value x is split into three bf16 parts, x = h + m + l, each the
// nearest bf16 to what the earlier parts leave. The split is exact: h keeps x's top 8 significant bits, m the
// next 8, and what is left (≤ 8 bits) fits l. A product a·b is then the sum of the six part products
// hh + hm + mh + hl + lh + mm, each exact in float32 (8 × 8 bits), accumulated in float32 by the tile unit; the
// three left out (ml, lm, ll) are below 2^-23·|a·b| together. So each entry errs by at most (6k + 2)·2^-24·Σ|a·b|
// (Higham's bound for 6k float32 additions, plus the dropped parts), and in practice by about √(6k)·2^-24·Σ|a·b|:
// float32 GEMM accuracy. Measured on correlate shapes: 1.2× OpenBLAS per CPU second (bench/gemm.ts), splitting
// included; not yet measurably faster inside the stages, so src/model/gemm.ts uses it only on request.
//
// Layout: per block of KC tokens, A is packed as 16-row tiles [16][32 tokens] (natural) and B as the tile unit's
// pair-interleaved layout [16 token pairs][16 rows][2] (a 16 × 16 transpose of 32-bit pairs), one tile per part.
// A 2 × 2 block of 16 × 16 float32 accumulator tiles runs over the KC block; 8 such row blocks share each B strip
// while it sits in L2. The result does not depend on the thread count: each entry has one owner and one order.
#include "kernels.h"

#include <pthread.h>
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
#define AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16")))

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

// 16 values of row `row` from token t0 (zeros past the operand's rows or the block's tokens).
AMX_TARGET static inline __m512 load16(const float* src, int64_t rows, int64_t ld, int64_t row, int64_t t0, int64_t tokens) {
  if (row >= rows || t0 >= tokens) return _mm512_setzero_ps();
  if (t0 + 16 <= tokens) return _mm512_loadu_ps(src + row * ld + t0);
  return _mm512_maskz_loadu_ps((__mmask16)((1u << (tokens - t0)) - 1), src + row * ld + t0);
}

typedef struct {
  const float* src;
  int64_t rows, ld, tokens;  // tokens: valid tokens from src's column 0 (the block's start)
  int64_t block0, block1;    // 16-row blocks to pack
  int64_t steps;             // steps in this KC block
  uint16_t* dst;             // [16-row block][step][part][TILE]
  int pairs;                 // 0: natural tiles (A); 1: pair-interleaved tiles (B)
} PackJob;

AMX_TARGET static void* pack(void* arg) {
  const PackJob* j = arg;
  uint32_t pairs[PARTS][16][16];  // B: [part][row][token pair]
  for (int64_t block = j->block0; block < j->block1; block++) {
    for (int64_t s = 0; s < j->steps; s++) {
      uint16_t* tiles = j->dst + (block * j->steps + s) * PARTS * TILE;
      for (int r = 0; r < 16; r++) {
        for (int half = 0; half < 2; half++) {
          __m256i part[PARTS];
          split16(load16(j->src, j->rows, j->ld, block * 16 + r, s * STEP + half * 16, j->tokens), &part[0], &part[1], &part[2]);
          for (int p = 0; p < PARTS; p++) {
            void* to = j->pairs ? (void*)&pairs[p][r][half * 8] : (void*)(tiles + p * TILE + r * STEP + half * 16);
            _mm256_storeu_si256((__m256i*)to, part[p]);
          }
        }
      }
      if (!j->pairs) continue;
      uint32_t* out = (uint32_t*)tiles;  // tile row q = token pair q of the 16 rows
      for (int p = 0; p < PARTS; p++)
        for (int q = 0; q < 16; q++)
          for (int r = 0; r < 16; r++) out[p * 256 + q * 16 + r] = pairs[p][r][q];
    }
  }
  return NULL;
}

// Accumulator tiles 0–3 = C[rows a0|a1][cols b0|b1]; operand tiles 4–5 hold A parts, 6–7 B parts. In this order
// (16 tile loads per step; the fewest, 14, measured no faster) a value times 1 adds up as (h + m) + l, which is exact:
// so A·I = A to the bit (the tests check it). h·h, l·h, m·h … would round h + l where h was rounded up.
#define DOT4 _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
AMX_TARGET static void block2x2(const uint16_t* a0, const uint16_t* a1, const uint16_t* b0, const uint16_t* b1, int64_t steps,
                                float* c, int64_t ldc, int first) {
  const int64_t stride = ldc * 4;
  if (first) {
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
  } else {
    _tile_loadd(0, c, stride); _tile_loadd(1, c + 16, stride); _tile_loadd(2, c + 16 * ldc, stride); _tile_loadd(3, c + 16 * ldc + 16, stride);
  }
  for (int64_t s = 0; s < steps; s++, a0 += PARTS * TILE, a1 += PARTS * TILE, b0 += PARTS * TILE, b1 += PARTS * TILE) {
    _tile_loadd(4, a0, 64); _tile_loadd(5, a1, 64); _tile_loadd(6, b0, 64); _tile_loadd(7, b1, 64); DOT4  // h·h
    _tile_loadd(4, a0 + TILE, 64); _tile_loadd(5, a1 + TILE, 64); DOT4                                  // m·h
    _tile_loadd(6, b0 + TILE, 64); _tile_loadd(7, b1 + TILE, 64); DOT4                                  // m·m
    _tile_loadd(4, a0, 64); _tile_loadd(5, a1, 64); DOT4                                                // h·m
    _tile_loadd(6, b0 + 2 * TILE, 64); _tile_loadd(7, b1 + 2 * TILE, 64); DOT4                          // h·l
    _tile_loadd(4, a0 + 2 * TILE, 64); _tile_loadd(5, a1 + 2 * TILE, 64); _tile_loadd(6, b0, 64); _tile_loadd(7, b1, 64); DOT4  // l·h
  }
  _tile_stored(0, c, stride); _tile_stored(1, c + 16, stride); _tile_stored(2, c + 16 * ldc, stride); _tile_stored(3, c + 16 * ldc + 16, stride);
}

typedef struct {
  const uint16_t *a, *b;  // packed KC block
  int64_t steps, row_blocks, col_blocks;  // 32-row blocks of A and of B
  float* c;
  int64_t ldc;
  int first, upper_only;
  int64_t pair0, pair1;  // this thread's run of block pairs
} ComputeJob;

AMX_TARGET static void run_block(const ComputeJob* j, int64_t rb, int64_t cb) {
  const int64_t span = j->steps * PARTS * TILE;  // one 16-row block's packed KC block
  const uint16_t *a = j->a + 2 * rb * span, *b = j->b + 2 * cb * span;
  block2x2(a, a + span, b, b + span, j->steps, j->c + rb * 32 * j->ldc + cb * 32, j->ldc, j->first);
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

// out = A·Bᵀ; symmetric (a == b, m == n) computes the upper triangle and mirrors it.
static void amx_gemm(const float* a, const float* b, int64_t m, int64_t n, int64_t k, float* out, int threads) {
  const int symmetric = a == b && m == n;
  const int64_t m32 = (m + 31) / 32 * 32, n32 = (n + 31) / 32 * 32;
  int64_t kc_steps = PACKED_BYTES / ((m32 + n32) * PARTS * 2 * STEP);
  const int64_t kc_tokens = (kc_steps < KC ? KC : kc_steps) * STEP;
  const int padded = m32 != m || n32 != n;
  float* c = padded ? malloc((size_t)(m32 * n32) * sizeof(float)) : out;
  uint16_t* pa = malloc((size_t)(m32 * kc_tokens * PARTS) * sizeof(uint16_t));
  uint16_t* pb = malloc((size_t)(n32 * kc_tokens * PARTS) * sizeof(uint16_t));
  if (!c || !pa || !pb) abort();  // tens of MB at most; V8 would not survive either
  if (threads > MAX_THREADS / 2) threads = MAX_THREADS / 2;
  if (k == 0) memset(c, 0, (size_t)(m32 * n32) * sizeof(float));
  for (int64_t t0 = 0; t0 < k; t0 += kc_tokens) {
    const int64_t tokens = k - t0 < kc_tokens ? k - t0 : kc_tokens, steps = (tokens + STEP - 1) / STEP;
    PackJob packs[MAX_THREADS];
    int count = 0;
    for (int side = 0; side < 2; side++) {
      const int64_t rows = side ? n : m, blocks = (side ? n32 : m32) / 16;
      for (int t = 0; t < threads; t++) {
        packs[count++] = (PackJob){(side ? b : a) + t0, rows, k, k - t0, blocks * t / threads, blocks * (t + 1) / threads,
                                   steps, side ? pb : pa, side};
      }
    }
    run_jobs(pack, packs, sizeof(PackJob), count);
    ComputeJob jobs[MAX_THREADS];
    const ComputeJob all = {pa, pb, steps, m32 / 32, n32 / 32, c, n32, t0 == 0, symmetric, 0, 0};
    const int64_t pairs = block_pairs(&all, 0, 0, 0);
    for (int t = 0; t < threads; t++) jobs[t] = all, jobs[t].pair0 = pairs * t / threads, jobs[t].pair1 = pairs * (t + 1) / threads;
    run_jobs(compute, jobs, sizeof(ComputeJob), threads);
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
  if (m > 0 && n > 0) amx_gemm(a, b, m, n, k, out, threads < 1 ? 1 : (int)threads);
#else
  range_error(env, "gemm (amx): not built");
#endif
  return NULL;
}

napi_status register_amx(napi_env env, napi_value exports) {
#ifdef HAVE_AMX
  static pthread_once_t checked = PTHREAD_ONCE_INIT;  // worker threads load the module too
  pthread_once(&checked, check_once);
#endif
  napi_status s = define_function(env, exports, "amxProblem", AmxProblem);
  return s == napi_ok ? define_function(env, exports, "amxGemm", AmxGemm) : s;
}
