// Kernels of the correlate stage: shift a chunk's rows by fixed reference values into the float32 GEMM operand,
// with each row's Σ and Σ² in float64 (src/stats/pearson.ts). The rows come either from a Float32Array or as
// float32/float16 blobs inside a buffer read from an activation shard (src/io/activation-store.ts), so a shard
// goes from the file's bytes to the GEMM operand in one pass.
//
// Summation order is fixed (eight lanes, lane = token mod 8, combined pairwise) and is the same in the JavaScript
// fallback (src/stats/kernels.ts), so both give bit-identical results.
#define _GNU_SOURCE  // RTLD_DEFAULT
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

enum { LANES = 8 };

// IEEE binary16 → binary32, exact (subnormals, infinities and NaN included), branch-free so that it vectorizes.
static inline float half_to_float(uint16_t h) {
  uint32_t magnitude = (uint32_t)(h & 0x7fffu) << 13;
  float f;
  memcpy(&f, &magnitude, 4);
  f *= 0x1p112f;  // rebias the exponent (15 → 127); subnormal halves become normal floats exactly
  uint32_t bits;
  memcpy(&bits, &f, 4);
  if ((h & 0x7fffu) >= 0x7c00u) bits = magnitude | 0x7f800000u;  // Inf and NaN keep their payload
  bits |= (uint32_t)(h & 0x8000u) << 16;
  memcpy(&f, &bits, 4);
  return f;
}

// Eight lanes as GCC/Clang vector types: each lane is the scalar code's lane (token mod 8), so the arithmetic,
// and the rounding, are exactly those of the JavaScript fallback; the compiler maps them to SSE2, AVX2 or AVX-512.
typedef float f32x8 __attribute__((vector_size(32)));
typedef double f64x8 __attribute__((vector_size(64)));

static inline float load_value(const unsigned char* src, int half, int64_t t) {
  if (half) {
    uint16_t h;
    memcpy(&h, src + 2 * t, 2);
    return half_to_float(h);
  }
  float x;
  memcpy(&x, src + 4 * t, 4);
  return x;
}

// One step of a row's shift: eight values into dst as float32(x − c), their float64 lane sums added.
__attribute__((always_inline)) static inline void shift_step(f32x8 x, double c, float* dst, f64x8* s1, f64x8* s2) {
  f32x8 y = __builtin_convertvector(__builtin_convertvector(x, f64x8) - c, f32x8);
  memcpy(dst, &y, sizeof y);
  f64x8 wide = __builtin_convertvector(y, f64x8);
  *s1 += wide;
  *s2 += wide * wide;
}

// The values after the last whole step, one by one into their lanes, then each lane set combined pairwise.
__attribute__((always_inline)) static inline void shift_finish(const unsigned char* src, int half, int64_t t, int64_t tokens, double c,
                                                               float* dst, f64x8* s1, f64x8* s2, double* sum, double* sum_sq) {
  for (; t < tokens; t++) {
    float y = (float)((double)load_value(src, half, t) - c);
    dst[t] = y;
    (*s1)[t % LANES] += y;
    (*s2)[t % LANES] += (double)y * y;
  }
  *sum = (((*s1)[0] + (*s1)[1]) + ((*s1)[2] + (*s1)[3])) + (((*s1)[4] + (*s1)[5]) + ((*s1)[6] + (*s1)[7]));
  *sum_sq = (((*s2)[0] + (*s2)[1]) + ((*s2)[2] + (*s2)[3])) + (((*s2)[4] + (*s2)[5]) + ((*s2)[6] + (*s2)[7]));
}

// One row: dst[t] = float32(x[t] − c); returns Σ dst and Σ dst² in float64, lane by lane.
VECTOR_CLONES
static void shift_row(const unsigned char* src, int half, int64_t tokens, double c, float* dst, double* sum, double* sum_sq) {
  f64x8 s1 = {0}, s2 = {0};
  int64_t t = 0;
  for (; t + LANES <= tokens; t += LANES) {
    f32x8 x;
    if (half) {
      for (int j = 0; j < LANES; j++) x[j] = load_value(src, 1, t + j);
    } else {
      memcpy(&x, src + 4 * t, sizeof x);
    }
    shift_step(x, c, dst + t, &s1, &s2);
  }
  shift_finish(src, half, t, tokens, c, dst, &s1, &s2, sum, sum_sq);
}

#ifdef HAVE_AVX512
// shift_row for float16 rows on CPUs with AVX-512 and F16C: vcvtph2ps converts eight halves at once, exactly as
// half_to_float does one (finite values; a NaN may come out quiet, and is refused either way), where the portable
// loop converted them one by one: this was ~28% of the screened correlate's CPU time.
__attribute__((target("avx512f,f16c")))
static void shift_row_f16c(const unsigned char* src, int64_t tokens, double c, float* dst, double* sum, double* sum_sq) {
  f64x8 s1 = {0}, s2 = {0};
  int64_t t = 0;
  for (; t + LANES <= tokens; t += LANES) {
    f32x8 x;
    const __m256 halves = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(src + 2 * t)));
    memcpy(&x, &halves, sizeof x);
    shift_step(x, c, dst + t, &s1, &s2);
  }
  shift_finish(src, 1, t, tokens, c, dst, &s1, &s2, sum, sum_sq);
}
#endif

// The first non-finite shifted value of a row (its index), or -1. Only called when a row's sums are not finite.
static int64_t first_non_finite(const float* row, int64_t tokens) {
  for (int64_t t = 0; t < tokens; t++) {
    if (!isfinite(row[t])) return t;
  }
  return -1;
}

typedef struct {
  const unsigned char* const* starts;
  int half;
  int64_t first, end, tokens;  // rows [first, end)
  const double* shift;
  float* dst;
  double *sum, *sum_sq;
  int64_t bad;  // flat index of the first non-finite shifted value in this range, or -1
  int f16c;     // shift_row_f16c can run here
} ShiftJob;

static void* shift_range(void* arg) {
  ShiftJob* job = arg;
  job->bad = -1;
  for (int64_t i = job->first; i < job->end; i++) {
    float* out = job->dst + i * job->tokens;
#ifdef HAVE_AVX512
    if (job->half && job->f16c) shift_row_f16c(job->starts[i], job->tokens, job->shift[i], out, job->sum + i, job->sum_sq + i);
    else
#endif
      shift_row(job->starts[i], job->half, job->tokens, job->shift[i], out, job->sum + i, job->sum_sq + i);
    if (!isfinite(job->sum[i]) || !isfinite(job->sum_sq[i])) {
      int64_t t = first_non_finite(out, job->tokens);
      job->bad = i * job->tokens + (t < 0 ? 0 : t);
      return NULL;
    }
  }
  return NULL;
}

static int has_f16c(void) {
#ifdef HAVE_AVX512
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("f16c");
#else
  return 0;
#endif
}

// Shifts `rows` rows whose bytes start at starts[i] (element size 2 or 4 bytes), on up to kernel_threads threads;
// returns the flat index row·tokens + t of the first non-finite shifted value, or -1 when every value is finite.
// A range stops at its first bad row: the caller throws, and the destination is scratch.
static int64_t shift_rows(const unsigned char* const* starts, int half, int64_t rows, int64_t tokens, const double* shift,
                          float* dst, double* sum, double* sum_sq) {
  int threads = threads_for(rows * tokens, 1 << 18);
  if (threads > rows) threads = (int)rows;
  ShiftJob jobs[MAX_THREADS];
  for (int k = 0; k < threads; k++) {
    jobs[k] = (ShiftJob){starts, half, rows * k / threads, rows * (k + 1) / threads, tokens, shift, dst, sum, sum_sq, -1, has_f16c()};
  }
  run_jobs(shift_range, jobs, sizeof jobs[0], threads);
  for (int k = 0; k < threads; k++) {
    if (jobs[k].bad >= 0) return jobs[k].bad;  // ranges are in row order: the first bad one is the earliest
  }
  return -1;
}

typedef struct {
  const double* shift;
  float* dst;
  double* sum;
  double* sum_sq;
} ShiftOutputs;

// shift, dst, sum, sumSq arguments (argv[0..3]) for `rows` rows of `tokens`.
static int shift_outputs(napi_env env, napi_value* argv, int64_t rows, int64_t tokens, ShiftOutputs* o) {
  size_t shift_len, dst_len, sum_len, sum_sq_len;
  if (!typed_arg(env, argv[0], napi_float64_array, "shift", (void**)&o->shift, &shift_len) ||
      !typed_arg(env, argv[1], napi_float32_array, "dst", (void**)&o->dst, &dst_len) ||
      !typed_arg(env, argv[2], napi_float64_array, "sum", (void**)&o->sum, &sum_len) ||
      !typed_arg(env, argv[3], napi_float64_array, "sumSq", (void**)&o->sum_sq, &sum_sq_len)) {
    return 0;
  }
  if ((int64_t)shift_len < rows || (int64_t)sum_len < rows || (int64_t)sum_sq_len < rows || (int64_t)dst_len < rows * tokens) {
    return range_error(env, "kernels: shift, sum and sumSq need %lld values and dst %lld", (long long)rows,
                       (long long)(rows * tokens));
  }
  return 1;
}

static napi_value result_index(napi_env env, int64_t index) {
  napi_value out;
  napi_create_double(env, (double)index, &out);
  return out;
}

// shiftRows(src: Float32Array, rows, tokens, shift, dst, sum, sumSq) → -1 or the flat index of a non-finite value.
// src is [rows, tokens] row-major.
static napi_value ShiftRows(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  if (!get_args(env, info, 7, argv, "shiftRows(src, rows, tokens, shift, dst, sum, sumSq)")) return NULL;
  float* src;
  size_t src_len;
  int64_t rows, tokens;
  ShiftOutputs o;
  if (!typed_arg(env, argv[0], napi_float32_array, "src", (void**)&src, &src_len) || !int_arg(env, argv[1], "rows", &rows) ||
      !int_arg(env, argv[2], "tokens", &tokens) || !shift_outputs(env, argv + 3, rows, tokens, &o)) {
    return NULL;
  }
  if ((int64_t)src_len < rows * tokens) {
    range_error(env, "kernels: src has %zu values, need %lld", src_len, (long long)(rows * tokens));
    return NULL;
  }
  const unsigned char** starts = malloc(sizeof *starts * (size_t)(rows > 0 ? rows : 1));
  if (!starts) {
    napi_throw_error(env, NULL, "kernels: out of memory");
    return NULL;
  }
  for (int64_t i = 0; i < rows; i++) starts[i] = (const unsigned char*)(src + i * tokens);
  int64_t bad = shift_rows(starts, 0, rows, tokens, o.shift, o.dst, o.sum, o.sum_sq);
  free(starts);
  return result_index(env, bad);
}

// shiftBlobs(bytes: Uint8Array, offsets: Float64Array, bytesPerValue: 2 | 4, tokens, shift, dst, sum, sumSq):
// row i is the little-endian float16/float32 blob of `tokens` values at bytes[offsets[i]].
static napi_value ShiftBlobs(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  if (!get_args(env, info, 8, argv, "shiftBlobs(bytes, offsets, bytesPerValue, tokens, shift, dst, sum, sumSq)")) return NULL;
  unsigned char* bytes;
  double* offsets;
  size_t bytes_len, rows;
  int64_t width, tokens;
  ShiftOutputs o;
  if (!typed_arg(env, argv[0], napi_uint8_array, "bytes", (void**)&bytes, &bytes_len) ||
      !typed_arg(env, argv[1], napi_float64_array, "offsets", (void**)&offsets, &rows) ||
      !int_arg(env, argv[2], "bytesPerValue", &width) || !int_arg(env, argv[3], "tokens", &tokens) ||
      !shift_outputs(env, argv + 4, (int64_t)rows, tokens, &o)) {
    return NULL;
  }
  const unsigned char** starts = blob_starts(env, bytes, bytes_len, offsets, rows, width, tokens, "blob");
  if (!starts) return NULL;
  int64_t bad = shift_rows(starts, width == 2, (int64_t)rows, tokens, o.shift, o.dst, o.sum, o.sum_sq);
  free(starts);
  return result_index(env, bad);
}

typedef struct {
  double* into;
  const float* from;
  int64_t first, end;
} AddJob;

static void* add_range(void* arg) {
  AddJob* job = arg;
  for (int64_t i = job->first; i < job->end; i++) job->into[i] += job->from[i];
  return NULL;
}

// addFloat32Into(into: Float64Array, from: Float32Array): into[i] += from[i] over into's length, on up to
// kernel_threads threads (the chunk product into the float64 cross sums).
static napi_value AddFloat32Into(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  double* into;
  float* from;
  size_t into_len, from_len;
  if (!get_args(env, info, 2, argv, "addFloat32Into(into, from)") ||
      !typed_arg(env, argv[0], napi_float64_array, "into", (void**)&into, &into_len) ||
      !typed_arg(env, argv[1], napi_float32_array, "from", (void**)&from, &from_len)) {
    return NULL;
  }
  if (from_len < into_len) {
    range_error(env, "kernels: from has %zu values, into %zu", from_len, into_len);
    return NULL;
  }
  int64_t n = (int64_t)into_len;
  int threads = threads_for(n, 1 << 20);
  AddJob jobs[MAX_THREADS];
  for (int k = 0; k < threads; k++) jobs[k] = (AddJob){into, from, n * k / threads, n * (k + 1) / threads};
  run_jobs(add_range, jobs, sizeof jobs[0], threads);
  return NULL;
}

// ── sparse dots: the screened correlate's exact correlations of candidate pairs (src/stats/screen/family.ts) ──

// The dots' multiply-adds may fuse (the build otherwise forbids it, -ffp-contract=off): a float32 × float32 product is
// exact in float64, so fma(x, y, s) rounds once where x·y + s rounds once, to the same value. 5–8% less CPU for the
// screened correlate.
#define EXACT_FMA __attribute__((optimize("fp-contract=fast")))

// Σ_t a[t]·b[t] over eight float64 lanes (lane = t mod 8), combined pairwise: the JavaScript fallback's order.
// float32 × float32 is exact in float64, so the sum's rounding is the only one, and the same in both.
VECTOR_CLONES EXACT_FMA
static double dot_row(const float* a, const float* b, int64_t tokens) {
  f64x8 s = {0};
  int64_t t = 0;
  for (; t + LANES <= tokens; t += LANES) {
    f32x8 x, y;
    memcpy(&x, a + t, sizeof x);
    memcpy(&y, b + t, sizeof y);
    s += __builtin_convertvector(x, f64x8) * __builtin_convertvector(y, f64x8);
  }
  for (; t < tokens; t++) s[t % LANES] += (double)a[t] * (double)b[t];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// dot_row for four rows of B at once, each summed exactly as dot_row sums it. One accumulator chain kept
// dot_row waiting on its additions' latency (~8 GFLOP/s); four independent chains overlap, and a is loaded once.
VECTOR_CLONES EXACT_FMA
static void dot_rows4(const float* a, const float* const b[4], int64_t tokens, double out[4]) {
  f64x8 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
  int64_t t = 0;
  for (; t + LANES <= tokens; t += LANES) {
    f32x8 x, y0, y1, y2, y3;
    memcpy(&x, a + t, sizeof x);
    memcpy(&y0, b[0] + t, sizeof x);
    memcpy(&y1, b[1] + t, sizeof x);
    memcpy(&y2, b[2] + t, sizeof x);
    memcpy(&y3, b[3] + t, sizeof x);
    f64x8 wide = __builtin_convertvector(x, f64x8);
    s0 += wide * __builtin_convertvector(y0, f64x8);
    s1 += wide * __builtin_convertvector(y1, f64x8);
    s2 += wide * __builtin_convertvector(y2, f64x8);
    s3 += wide * __builtin_convertvector(y3, f64x8);
  }
  for (; t < tokens; t++) {
    double x = a[t];
    s0[t % LANES] += x * (double)b[0][t];
    s1[t % LANES] += x * (double)b[1][t];
    s2[t % LANES] += x * (double)b[2][t];
    s3[t % LANES] += x * (double)b[3][t];
  }
  out[0] = ((s0[0] + s0[1]) + (s0[2] + s0[3])) + ((s0[4] + s0[5]) + (s0[6] + s0[7]));
  out[1] = ((s1[0] + s1[1]) + (s1[2] + s1[3])) + ((s1[4] + s1[5]) + (s1[6] + s1[7]));
  out[2] = ((s2[0] + s2[1]) + (s2[2] + s2[3])) + ((s2[4] + s2[5]) + (s2[6] + s2[7]));
  out[3] = ((s3[0] + s3[1]) + (s3[2] + s3[3])) + ((s3[4] + s3[5]) + (s3[6] + s3[7]));
}

// dot_rows4 for eight rows of B: eight chains hide the additions' latency that four still wait on.
VECTOR_CLONES EXACT_FMA
static void dot_rows8(const float* a, const float* const b[8], int64_t tokens, double out[8]) {
  f64x8 s[8] = {{0}};
  int64_t t = 0;
  for (; t + LANES <= tokens; t += LANES) {
    f32x8 x;
    memcpy(&x, a + t, sizeof x);
    const f64x8 wide = __builtin_convertvector(x, f64x8);
    for (int j = 0; j < 8; j++) {
      f32x8 y;
      memcpy(&y, b[j] + t, sizeof y);
      s[j] += wide * __builtin_convertvector(y, f64x8);
    }
  }
  for (; t < tokens; t++) {
    double x = a[t];
    for (int j = 0; j < 8; j++) s[j][t % LANES] += x * (double)b[j][t];
  }
  for (int j = 0; j < 8; j++) out[j] = ((s[j][0] + s[j][1]) + (s[j][2] + s[j][3])) + ((s[j][4] + s[j][5]) + (s[j][6] + s[j][7]));
}

typedef struct {
  const float *za, *zb;
  int64_t tokens, first, end;  // rows of A [first, end)
  const int32_t *row_start, *cols;
  double* dots;
} DotsJob;

static void* dots_range(void* arg) {
  DotsJob* job = arg;
  for (int64_t i = job->first; i < job->end; i++) {
    const float* a = job->za + i * job->tokens;
    int32_t e = job->row_start[i], end = job->row_start[i + 1];
    for (; e + 8 <= end; e += 8) {
      const float* b[8];
      double sums[8];
      for (int j = 0; j < 8; j++) b[j] = job->zb + (int64_t)job->cols[e + j] * job->tokens;
      dot_rows8(a, b, job->tokens, sums);
      for (int j = 0; j < 8; j++) job->dots[e + j] += sums[j];
    }
    for (; e + 4 <= end; e += 4) {
      const float* b[4];
      double sums[4];
      for (int j = 0; j < 4; j++) b[j] = job->zb + (int64_t)job->cols[e + j] * job->tokens;
      dot_rows4(a, b, job->tokens, sums);
      for (int j = 0; j < 4; j++) job->dots[e + j] += sums[j];
    }
    for (; e < end; e++) job->dots[e] += dot_row(a, job->zb + (int64_t)job->cols[e] * job->tokens, job->tokens);
  }
  return NULL;
}

// sparseDots(za, zb, tokens, rowStart, cols, dots): dots[e] += Σ_t za[i, t]·zb[cols[e], t] for every e of row i
// (CSR: rowStart[i] ≤ e < rowStart[i + 1]). Threads split A's rows so that each gets about as many candidates.
static napi_value SparseDots(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  if (!get_args(env, info, 6, argv, "sparseDots(za, zb, tokens, rowStart, cols, dots)")) return NULL;
  float *za, *zb;
  int32_t *row_start, *cols;
  double* dots;
  size_t za_len, zb_len, starts, count, dots_len;
  int64_t tokens;
  if (!typed_arg(env, argv[0], napi_float32_array, "za", (void**)&za, &za_len) ||
      !typed_arg(env, argv[1], napi_float32_array, "zb", (void**)&zb, &zb_len) || !int_arg(env, argv[2], "tokens", &tokens) ||
      !typed_arg(env, argv[3], napi_int32_array, "rowStart", (void**)&row_start, &starts) ||
      !typed_arg(env, argv[4], napi_int32_array, "cols", (void**)&cols, &count) ||
      !typed_arg(env, argv[5], napi_float64_array, "dots", (void**)&dots, &dots_len)) {
    return NULL;
  }
  int64_t rows = (int64_t)starts - 1;
  if (rows < 0 || (int64_t)za_len < rows * tokens || dots_len < count || row_start[0] != 0 || (size_t)row_start[rows] != count) {
    range_error(env, "kernels: sparseDots given %lld rows of A (%zu values), %zu candidates, %zu dots", (long long)rows, za_len, count, dots_len);
    return NULL;
  }
  for (int64_t i = 0; i < rows; i++) {
    if (row_start[i + 1] < row_start[i]) {
      range_error(env, "kernels: sparseDots rowStart decreases at row %lld", (long long)i);
      return NULL;
    }
  }
  for (size_t e = 0; e < count; e++) {
    if (cols[e] < 0 || ((int64_t)cols[e] + 1) * tokens > (int64_t)zb_len) {
      range_error(env, "kernels: sparseDots candidate %zu names row %d of B, which has %zu values", e, cols[e], zb_len);
      return NULL;
    }
  }
  int threads = threads_for((int64_t)count * tokens, 1 << 18);
  if (threads > rows) threads = rows > 0 ? (int)rows : 1;
  DotsJob jobs[MAX_THREADS];
  int64_t first = 0;
  for (int k = 0; k < threads; k++) {
    int64_t end = first;
    int64_t target = (int64_t)count * (k + 1) / threads;  // equal shares of candidates, not of rows
    while (end < rows && (k == threads - 1 || row_start[end] < target)) end++;
    jobs[k] = (DotsJob){za, zb, tokens, first, end, row_start, cols, dots};
    first = end;
  }
  run_jobs(dots_range, jobs, sizeof jobs[0], threads);
  return NULL;
}

// ── the rotation baseline's loops around its D·Rᵀ products (src/stats/baseline.ts) ──

typedef struct {
  const double *cross, *sum_a, *sum_b;
  double n;
  int64_t cols, offset, d, i0, first, end;  // the tile's rows [first, end)
  int transposed;
  float* out;
} CentreJob;

enum { TRANSPOSE_BLOCK = 64 };  // as in baseline.ts: the strided side stays in cache

// Rows [first, end) of centredCross's tile; each value as the JavaScript computes it: float32(Σxy − (Σx/n)·Σy).
static void* centre_range(void* arg) {
  const CentreJob* j = arg;
  const int64_t d = j->d;
  if (!j->transposed) {
    for (int64_t i = j->first; i < j->end; i++) {
      const double* src = j->cross + (j->i0 + i) * j->cols + j->offset;
      const double* sum_b = j->sum_b + j->offset;
      const double sx = j->sum_a[j->i0 + i] / j->n;
      float* dst = j->out + i * d;
      for (int64_t c = 0; c < d; c++) dst[c] = (float)(src[c] - sx * sum_b[c]);
    }
    return NULL;
  }
  for (int64_t c0 = 0; c0 < d; c0 += TRANSPOSE_BLOCK) {  // c: a neuron of A's rotated layer; i: a B anchor
    const int64_t c_end = c0 + TRANSPOSE_BLOCK < d ? c0 + TRANSPOSE_BLOCK : d;
    for (int64_t b0 = j->first; b0 < j->end; b0 += TRANSPOSE_BLOCK) {
      const int64_t i_end = b0 + TRANSPOSE_BLOCK < j->end ? b0 + TRANSPOSE_BLOCK : j->end;
      for (int64_t c = c0; c < c_end; c++) {
        const double* src = j->cross + (j->offset + c) * j->cols + j->i0;
        const double sx = j->sum_a[j->offset + c] / j->n;
        for (int64_t i = b0; i < i_end; i++) j->out[i * d + c] = (float)(src[i] - sx * j->sum_b[j->i0 + i]);
      }
    }
  }
  return NULL;
}

// centredCross(cross, cols, sumA, sumB, n, offset, d, transposed, i0, rows, out): src/stats/kernels.ts's contract.
static napi_value CentredCross(napi_env env, napi_callback_info info) {
  napi_value argv[11];
  double *cross, *sum_a, *sum_b;
  float* out;
  size_t cross_len, a_len, b_len, out_len;
  int64_t cols, n, offset, d, i0, rows;
  bool transposed;
  if (!get_args(env, info, 11, argv, "centredCross(cross, cols, sumA, sumB, n, offset, d, transposed, i0, rows, out)") ||
      !typed_arg(env, argv[0], napi_float64_array, "cross", (void**)&cross, &cross_len) || !int_arg(env, argv[1], "cols", &cols) ||
      !typed_arg(env, argv[2], napi_float64_array, "sumA", (void**)&sum_a, &a_len) ||
      !typed_arg(env, argv[3], napi_float64_array, "sumB", (void**)&sum_b, &b_len) || !int_arg(env, argv[4], "n", &n) ||
      !int_arg(env, argv[5], "offset", &offset) || !int_arg(env, argv[6], "d", &d) || !bool_arg(env, argv[7], "transposed", &transposed) ||
      !int_arg(env, argv[8], "i0", &i0) || !int_arg(env, argv[9], "rows", &rows) ||
      !typed_arg(env, argv[10], napi_float32_array, "out", (void**)&out, &out_len)) {
    return NULL;
  }
  // Not transposed: rows i0 + i of A, columns offset + c of B; transposed: rows offset + c of A, columns i0 + i of B.
  const int64_t last_row = transposed ? offset + d : i0 + rows, last_col = transposed ? i0 + rows : offset + d;
  if (cols <= 0 || (int64_t)cross_len < last_row * cols || last_col > cols || (int64_t)a_len < last_row || (int64_t)b_len < last_col ||
      (int64_t)out_len < rows * d) {
    range_error(env, "kernels: centredCross of %lld × %lld from %zu cross sums of %lld columns (sumA %zu, sumB %zu, out %zu) is out of range",
                (long long)rows, (long long)d, cross_len, (long long)cols, a_len, b_len, out_len);
    return NULL;
  }
  int threads = threads_for(rows * d, 1 << 18);
  if (threads > rows) threads = rows > 0 ? (int)rows : 1;
  CentreJob jobs[MAX_THREADS];
  for (int k = 0; k < threads; k++) jobs[k] = (CentreJob){cross, sum_a, sum_b, (double)n, cols, offset, d, i0, rows * k / threads, rows * (k + 1) / threads, transposed, out};
  run_jobs(centre_range, jobs, sizeof jobs[0], threads);
  return NULL;
}

typedef struct {
  const float* cov;
  const double *scatter, *inverse_root;
  int64_t d, first, end;
  double* best;
} MaximaJob;

// The JavaScript's loop: r = cov·(1/√scatter)·inverseRoot[k] in that order; NaN products never win.
static void* maxima_range(void* arg) {
  const MaximaJob* j = arg;
  for (int64_t i = j->first; i < j->end; i++) {
    const double sa = j->scatter[i];
    if (!(sa > 0)) {
      j->best[i] = NAN;
      continue;
    }
    const double inv_a = 1 / sqrt(sa);
    const float* row = j->cov + i * j->d;
    double best = -INFINITY;
    for (int64_t k = 0; k < j->d; k++) {
      const double r = (double)row[k] * inv_a * j->inverse_root[k];
      if (r > best) best = r;
    }
    j->best[i] = best == -INFINITY ? NAN : best;
  }
  return NULL;
}

// rotatedRowMaxima(cov, rows, d, scatter, inverseRoot, best): src/stats/kernels.ts's contract.
static napi_value RotatedRowMaxima(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  float* cov;
  double *scatter, *inverse_root, *best;
  size_t cov_len, scatter_len, root_len, best_len;
  int64_t rows, d;
  if (!get_args(env, info, 6, argv, "rotatedRowMaxima(cov, rows, d, scatter, inverseRoot, best)") ||
      !typed_arg(env, argv[0], napi_float32_array, "cov", (void**)&cov, &cov_len) || !int_arg(env, argv[1], "rows", &rows) ||
      !int_arg(env, argv[2], "d", &d) || !typed_arg(env, argv[3], napi_float64_array, "scatter", (void**)&scatter, &scatter_len) ||
      !typed_arg(env, argv[4], napi_float64_array, "inverseRoot", (void**)&inverse_root, &root_len) ||
      !typed_arg(env, argv[5], napi_float64_array, "best", (void**)&best, &best_len)) {
    return NULL;
  }
  if ((int64_t)cov_len < rows * d || (int64_t)scatter_len < rows || (int64_t)root_len < d || (int64_t)best_len < rows) {
    range_error(env, "kernels: rotatedRowMaxima of %lld × %lld given cov %zu, scatter %zu, inverseRoot %zu, best %zu", (long long)rows,
                (long long)d, cov_len, scatter_len, root_len, best_len);
    return NULL;
  }
  int threads = threads_for(rows * d, 1 << 18);
  if (threads > rows) threads = rows > 0 ? (int)rows : 1;
  MaximaJob jobs[MAX_THREADS];
  for (int k = 0; k < threads; k++) jobs[k] = (MaximaJob){cov, scatter, inverse_root, d, rows * k / threads, rows * (k + 1) / threads, best};
  run_jobs(maxima_range, jobs, sizeof jobs[0], threads);
  return NULL;
}

// ── the rotation baseline's Gaussian directions (src/stats/random.ts, rotation.ts) ──

// V8's log, cos and sin: the functions behind Math.log, Math.cos and Math.sin, exported by the node binary. Calling
// them (not libm's, which may round some values the other way) is what makes these normals equal the JavaScript
// ones bit for bit. NULL where this node does not export them; then gaussianPairs returns false.
typedef double (*MathFunction)(double);
static MathFunction v8_log, v8_cos, v8_sin;

static void find_v8_math(void) {
  v8_log = (MathFunction)dlsym(RTLD_DEFAULT, "_ZN2v84base7ieee7543logEd");
  v8_cos = (MathFunction)dlsym(RTLD_DEFAULT, "_ZN2v84base7ieee7543cosEd");
  v8_sin = (MathFunction)dlsym(RTLD_DEFAULT, "_ZN2v84base7ieee7543sinEd");
}

static inline uint32_t rotl32(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

// xoshiro128**, as random.ts's uniformFrom steps it.
static inline uint32_t next_u32(uint32_t s[4]) {
  const uint32_t result = rotl32(s[1] * 5, 7) * 9, t = s[1] << 9;
  s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3], s[2] ^= t, s[3] = rotl32(s[3], 11);
  return result;
}

static inline double next_uniform(uint32_t s[4]) {
  const uint32_t hi = next_u32(s), lo = next_u32(s);  // in this order, as the JavaScript's left-to-right evaluation
  return ((double)(hi >> 5) * 67108864.0 + (double)(lo >> 6)) / 9007199254740992.0;
}

typedef struct {
  double* out;
  int64_t first, end, count;  // pairs [first, end) of a `count`-value array
  double tail;                // an odd count's last pair's second uniform, which has no slot in out
} NormalJob;

// Each pair's two uniforms (in out[2p], out[2p + 1]) into boxMullerFill's two normals, its operations in its order.
static void* box_muller_range(void* arg) {
  const NormalJob* j = arg;
  for (int64_t p = j->first; p < j->end; p++) {
    double* at = j->out + 2 * p;
    const int whole = 2 * p + 1 < j->count;
    const double radius = sqrt(-2 * v8_log(1 - at[0]));
    const double angle = 2 * M_PI * (whole ? at[1] : j->tail);
    at[0] = radius * v8_cos(angle);
    if (whole) at[1] = radius * v8_sin(angle);
  }
  return NULL;
}

// gaussianPairs(state: Uint32Array(4), out: Float64Array) → false where V8's math functions are not found (nothing
// written), else true: out filled as src/stats/kernels.ts's contract says, state advanced. The uniforms are drawn in
// order on this thread, the transform split across threads.
static napi_value GaussianPairs(napi_env env, napi_callback_info info) {
  napi_value argv[2], result;
  uint32_t* state;
  double* out;
  size_t words, count;
  if (!get_args(env, info, 2, argv, "gaussianPairs(state, out)") || !typed_arg(env, argv[0], napi_uint32_array, "state", (void**)&state, &words) ||
      !typed_arg(env, argv[1], napi_float64_array, "out", (void**)&out, &count)) {
    return NULL;
  }
  if (words != 4) {
    range_error(env, "kernels: a generator state has 4 words, got %zu", words);
    return NULL;
  }
  static pthread_once_t found = PTHREAD_ONCE_INIT;
  pthread_once(&found, find_v8_math);
  const int usable = v8_log && v8_cos && v8_sin;
  if (usable) {
    // Two uniforms per pair, u1 (the radius) then u2 (the angle), a lone last value's pair included.
    for (size_t i = 0; i < count; i++) out[i] = next_uniform(state);
    const double tail = count % 2 ? next_uniform(state) : 0;
    const int64_t pairs = ((int64_t)count + 1) / 2;
    int threads = threads_for(pairs, 1 << 14);
    NormalJob jobs[MAX_THREADS];
    for (int k = 0; k < threads; k++) jobs[k] = (NormalJob){out, pairs * k / threads, pairs * (k + 1) / threads, (int64_t)count, tail};
    run_jobs(box_muller_range, jobs, sizeof jobs[0], threads);
  }
  napi_get_boolean(env, usable, &result);
  return result;
}

napi_status register_correlate(napi_env env, napi_value exports) {
  napi_status s = define_function(env, exports, "shiftRows", ShiftRows);
  if (s == napi_ok) s = define_function(env, exports, "shiftBlobs", ShiftBlobs);
  if (s == napi_ok) s = define_function(env, exports, "sparseDots", SparseDots);
  if (s == napi_ok) s = define_function(env, exports, "centredCross", CentredCross);
  if (s == napi_ok) s = define_function(env, exports, "rotatedRowMaxima", RotatedRowMaxima);
  if (s == napi_ok) s = define_function(env, exports, "gaussianPairs", GaussianPairs);
  return s == napi_ok ? define_function(env, exports, "addFloat32Into", AddFloat32Into) : s;
}
