// Causal self-attention of one (batch row, head) at a time, for the onnxruntime custom op of ort.c and for tests.
//
// onnxruntime's CPU kernel for ONNX Attention computes every query × key score, masks the upper half, and writes
// the whole [batch, heads, pos, pos] probability tensor before multiplying it by V: at 512 positions that is 50 MB
// per GPT-2-small layer and batch of four, half of it wasted. Here a block of queries meets only the keys at or
// before its last query, and the block's scores stay in cache from the product through the softmax to P·V.
//
// Scores are scale · (q · k) in float32; the softmax subtracts the row's maximum; masked keys get probability 0
// (Hugging Face fills them with float32's minimum, whose exponential is 0 as well).
#include "kernels.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"

enum {
  QUERY_BLOCK = 48,  // queries whose scores are held at once: 48 × 512 floats = 96 KB at GPT-2's context
  QK_ROWS = 12,      // queries per score micro-tile (× 32 keys: 24 accumulators)
  PV_ROWS = 6,       // queries per output micro-tile (× 64 values: 24 accumulators)
  KEY_STEP = 32,     // keys per score micro-tile
};

// Scratch of one thread: the head's keys transposed [d_head, keys padded to KEY_STEP] and a query block's scores.
// Threads of onnxruntime's pool live as long as the process; their scratch grows to the largest shape and stays.
static __thread float* scratch;
static __thread size_t scratch_floats;

static float* thread_scratch(size_t floats) {
  if (floats > scratch_floats) {
    free(scratch);
    scratch = aligned_alloc(64, ((floats * sizeof(float) + 63) / 64) * 64);
    scratch_floats = scratch ? floats : 0;
  }
  return scratch;
}

static int64_t round_up(int64_t n, int64_t to) { return (n + to - 1) / to * to; }

// ---- portable version: any d_head, any CPU ----

// bq, bk, bv: the head's biases (zeros when the op has none).
static void head_portable(const AttentionShape* s, const float* q, const float* k, const float* v, const float* bq, const float* bk,
                          const float* bv, float* out, float* scores) {
  int64_t hidden = s->heads * s->d_head, stride = s->stride;
  for (int64_t i = 0; i < s->positions; i++) {
    const float* qi = q + i * stride;
    float max = -INFINITY;
    for (int64_t j = 0; j <= i; j++) {
      float dot = 0;
      for (int64_t d = 0; d < s->d_head; d++) dot += (qi[d] + bq[d]) * (k[j * stride + d] + bk[d]);
      scores[j] = s->scale * dot;
      max = scores[j] > max || isnan(scores[j]) ? scores[j] : max;
    }
    float sum = 0;
    for (int64_t j = 0; j <= i; j++) sum += scores[j] = expf(scores[j] - max);
    float* oi = out + i * hidden;
    for (int64_t d = 0; d < s->d_head; d++) oi[d] = 0;
    for (int64_t j = 0; j <= i; j++)
      for (int64_t d = 0; d < s->d_head; d++) oi[d] += scores[j] * v[j * stride + d];
    for (int64_t d = 0; d < s->d_head; d++) oi[d] = oi[d] / sum + bv[d];  // Σ p = 1: v's bias adds once
  }
}

#ifdef HAVE_AVX512
// e^x for x ≤ 0 (the softmax's shifted scores): e^x = 2^n · e^r with n = round(x·log2 e) and |r| ≤ ln2/2, r taken
// in two steps (Cody–Waite); e^r by its Taylor series to degree 7 (relative error under 1e-8 on that range).
AVX512 static inline __m512 exp_nonpositive(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));  // e^−104 is below float32's smallest subnormal: the result is 0
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// scores[r][j] = Σ_d q[r][d] · kt[d][j] for `rows` queries (≤ QK_ROWS) and KEY_STEP keys from j0.
AVX512 static inline __attribute__((always_inline)) void score_tile(const float* q, int64_t q_stride, int rows, const float* kt, int64_t kt_stride, int64_t d_head,
                                     float* scores, int64_t scores_stride) {
  __m512 acc[QK_ROWS][2];
  for (int r = 0; r < QK_ROWS; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t d = 0; d < d_head; d++) {
    __m512 k0 = _mm512_load_ps(kt + d * kt_stride), k1 = _mm512_load_ps(kt + d * kt_stride + 16);
    for (int r = 0; r < QK_ROWS; r++) {
      if (r >= rows) break;
      __m512 qd = _mm512_set1_ps(q[r * q_stride + d]);
      acc[r][0] = _mm512_fmadd_ps(qd, k0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(qd, k1, acc[r][1]);
    }
  }
  for (int r = 0; r < rows; r++) {
    _mm512_store_ps(scores + r * scores_stride, acc[r][0]);
    _mm512_store_ps(scores + r * scores_stride + 16, acc[r][1]);
  }
}

// out[r][c..c+width) = Σ_{j < keys} p[r][j] · v[j][c..c+width) / Σ_j p[r][j] + bias[c..c+width) for `rows`
// queries (≤ PV_ROWS), width 64 or 16 (p and v from c on, bias too). Σ p is 1 after the division, so v's bias adds once.
AVX512 static inline __attribute__((always_inline)) void value_tile(const float* p, int64_t p_stride, int rows, int64_t keys, const float* v, int64_t v_stride, int width,
                                     const float* inverse_sum, const float* bias, float* out, int64_t out_stride) {
  __m512 acc[PV_ROWS][4];
  int chunks = width / 16;
  for (int r = 0; r < PV_ROWS; r++)
    for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
  for (int64_t j = 0; j < keys; j++) {
    __m512 vj[4];
    for (int c = 0; c < 4; c++)
      if (c < chunks) vj[c] = _mm512_loadu_ps(v + j * v_stride + 16 * c);
    for (int r = 0; r < PV_ROWS; r++) {
      if (r >= rows) break;
      __m512 prj = _mm512_set1_ps(p[r * p_stride + j]);
      for (int c = 0; c < 4; c++)
        if (c < chunks) acc[r][c] = _mm512_fmadd_ps(prj, vj[c], acc[r][c]);
    }
  }
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < chunks; c++)
      _mm512_storeu_ps(out + r * out_stride + 16 * c, _mm512_fmadd_ps(acc[r][c], _mm512_set1_ps(inverse_sum[r]), _mm512_loadu_ps(bias + 16 * c)));
}

// The tiles above with their row count (and width) known at compile time, so that the accumulators stay in registers.
AVX512 static void score_tile_rows(const float* q, int64_t q_stride, int rows, const float* kt, int64_t kt_stride, int64_t d_head,
                                   float* scores, int64_t scores_stride) {
  switch (rows) {
#define ROWS(n) \
  case n: score_tile(q, q_stride, n, kt, kt_stride, d_head, scores, scores_stride); break;
    ROWS(1) ROWS(2) ROWS(3) ROWS(4) ROWS(5) ROWS(6) ROWS(7) ROWS(8) ROWS(9) ROWS(10) ROWS(11) ROWS(12)
#undef ROWS
  }
}

AVX512 static void value_tile_rows(const float* p, int64_t p_stride, int rows, int64_t keys, const float* v, int64_t v_stride, int width,
                                   const float* inverse_sum, const float* bias, float* out, int64_t out_stride) {
  switch (rows * 100 + width) {
#define ROWS(n)                                                                                                    \
  case n * 100 + 64: value_tile(p, p_stride, n, keys, v, v_stride, 64, inverse_sum, bias, out, out_stride); break; \
  case n * 100 + 16: value_tile(p, p_stride, n, keys, v, v_stride, 16, inverse_sum, bias, out, out_stride); break;
    ROWS(1) ROWS(2) ROWS(3) ROWS(4) ROWS(5) ROWS(6)
#undef ROWS
  }
}

// Row r of a block's scores: scale, softmax over keys [0, valid), zeros from valid to `width`; returns 1 / Σ e.
AVX512 static float softmax_row(float* row, int64_t valid, int64_t width, float scale) {
  __m512 vscale = _mm512_set1_ps(scale);
  __m512 max = _mm512_set1_ps(-INFINITY);
  for (int64_t j = 0; j < valid; j += 16) {
    __mmask16 m = valid - j >= 16 ? 0xffff : (__mmask16)((1u << (valid - j)) - 1);
    __m512 x = _mm512_mul_ps(_mm512_maskz_load_ps(m, row + j), vscale);
    _mm512_store_ps(row + j, x);
    max = _mm512_mask_max_ps(max, m, max, x);  // a NaN score passes into max (second operand) and on into the sum
  }
  __m512 vmax = _mm512_set1_ps(_mm512_reduce_max_ps(max));
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < width; j += 16) {
    __mmask16 m = j >= valid ? 0 : valid - j >= 16 ? 0xffff : (__mmask16)((1u << (valid - j)) - 1);
    __m512 e = _mm512_maskz_mov_ps(m, exp_nonpositive(_mm512_sub_ps(_mm512_load_ps(row + j), vmax)));
    _mm512_store_ps(row + j, e);
    sum = _mm512_add_ps(sum, e);
  }
  return 1.0f / _mm512_reduce_add_ps(sum);
}

// kt: scratch for the head's keys transposed; qb: for a block of queries, bias added; scores: for the block's scores.
AVX512 static void head_avx512(const AttentionShape* s, const float* q, const float* k, const float* v, const float* bq, const float* bk,
                               const float* bv, float* out, float* kt, float* qb, float* scores) {
  int64_t hidden = s->heads * s->d_head, dh = s->d_head, positions = s->positions, stride = s->stride;
  int64_t kt_stride = round_up(positions, KEY_STEP);
  // The head's keys (bias added) transposed, zero-padded to whole key steps (padding keys are masked).
  __m512i key_offsets = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32((int)stride));
  for (int64_t j = 0; j < kt_stride; j += 16) {
    __mmask16 m = j >= positions ? 0 : positions - j >= 16 ? 0xffff : (__mmask16)((1u << (positions - j)) - 1);
    const float* column = k + (j < positions ? j : 0) * stride;
    for (int64_t d = 0; d < dh; d++) {
      __m512 keys = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, key_offsets, column + d, 4);
      _mm512_store_ps(kt + d * kt_stride + j, _mm512_maskz_add_ps(m, keys, _mm512_set1_ps(bk[d])));
    }
  }
  float inverse_sum[QUERY_BLOCK];
  for (int64_t q0 = 0; q0 < positions; q0 += QUERY_BLOCK) {
    int64_t rows = positions - q0 < QUERY_BLOCK ? positions - q0 : QUERY_BLOCK;
    int64_t width = round_up(q0 + rows, KEY_STEP);  // keys any query of the block may see, padded
    for (int64_t r = 0; r < rows; r++)
      for (int64_t d = 0; d < dh; d += 16)
        _mm512_storeu_ps(qb + r * dh + d, _mm512_add_ps(_mm512_loadu_ps(q + (q0 + r) * stride + d), _mm512_loadu_ps(bq + d)));
    for (int64_t r0 = 0; r0 < rows; r0 += QK_ROWS) {
      int tile_rows = rows - r0 < QK_ROWS ? (int)(rows - r0) : QK_ROWS;
      int64_t keys = round_up(q0 + r0 + tile_rows, KEY_STEP);
      for (int64_t j0 = 0; j0 < keys; j0 += KEY_STEP)
        score_tile_rows(qb + r0 * dh, dh, tile_rows, kt + j0, kt_stride, dh, scores + r0 * width + j0, width);
    }
    for (int64_t r = 0; r < rows; r++) inverse_sum[r] = softmax_row(scores + r * width, q0 + r + 1, width, s->scale);
    for (int64_t r0 = 0; r0 < rows; r0 += PV_ROWS) {
      int tile_rows = rows - r0 < PV_ROWS ? (int)(rows - r0) : PV_ROWS;
      int64_t keys = q0 + r0 + tile_rows;  // the tile's last query sees keys [0, keys); later ones have p = 0
      for (int64_t c = 0; c < dh; c += dh - c >= 64 ? 64 : 16)
        value_tile_rows(scores + r0 * width, width, tile_rows, keys, v + c, stride, dh - c >= 64 ? 64 : 16, inverse_sum + r0, bv + c,
                        out + (q0 + r0) * hidden + c, hidden);
    }
  }
}

// The vectorized path serves AVX-512 machines and heads of a multiple of 16 values; the portable one the rest.
static int vectorized(const AttentionShape* s) { return !s->portable && s->d_head % 16 == 0 && __builtin_cpu_supports("avx512f"); }
#endif

int causal_attention_item(const AttentionShape* s, const float* q, const float* k, const float* v, float* out, int64_t item) {
  int64_t b = item / s->heads, h = item % s->heads, hidden = s->heads * s->d_head;
  int64_t in = b * s->positions * s->stride + h * s->d_head;
  q += in, k += in, v += in, out += b * s->positions * hidden + h * s->d_head;
  int64_t padded = round_up(s->positions, KEY_STEP);
  // Scratch: the head's biases (q | k | v), then the path's own buffers.
  float* buffer = thread_scratch(round_up(3 * s->d_head, 16) + s->d_head * padded + QUERY_BLOCK * (s->d_head + padded));
  if (!buffer) return 0;
  float *bq = buffer, *bk = bq + s->d_head, *bv = bk + s->d_head;
  for (int64_t d = 0; d < s->d_head; d++) {
    bq[d] = s->bias ? s->bias[h * s->d_head + d] : 0;
    bk[d] = s->bias ? s->bias[hidden + h * s->d_head + d] : 0;
    bv[d] = s->bias ? s->bias[2 * hidden + h * s->d_head + d] : 0;
  }
  float* rest = bv + s->d_head;
#ifdef HAVE_AVX512
  if (vectorized(s)) {
    // 64-byte alignment for the transposed keys and the scores (aligned loads and stores); the scratch is aligned
    float* kt = buffer + round_up(3 * s->d_head, 16);
    float* qb = kt + s->d_head * padded;
    head_avx512(s, q, k, v, bq, bk, bv, out, kt, qb, qb + QUERY_BLOCK * s->d_head);
    return 1;
  }
#endif
  head_portable(s, q, k, v, bq, bk, bv, out, rest);
  return 1;
}

// Both test entry points: the op's computation on the calling thread, item after item.
static napi_value run_items(napi_env env, AttentionShape* s, const float* q, const float* k, const float* v, float* out) {
  for (int64_t item = 0; item < s->batch * s->heads; item++)
    if (!causal_attention_item(s, q, k, v, out, item)) return range_error(env, "causalAttention: out of memory"), NULL;
  return NULL;
}

// Reads batch, positions, heads, scale and portable from argv[0..4] and checks that `values` and `out_length` fit
// them with rows of `per_row` hidden widths (1 for q, k, v of their own, 3 for q | k | v); fills s but its bias.
static int shape_args(napi_env env, napi_value* argv, size_t values, int64_t per_row, size_t out_length, AttentionShape* s) {
  double scale;
  bool portable;
  if (!int_arg(env, argv[0], "batch", &s->batch) || !int_arg(env, argv[1], "positions", &s->positions) || !int_arg(env, argv[2], "heads", &s->heads))
    return 0;
  if (napi_get_value_double(env, argv[3], &scale) != napi_ok) return napi_throw_type_error(env, NULL, "causalAttention: scale must be a number"), 0;
  if (!bool_arg(env, argv[4], "portable", &portable)) return 0;
  int64_t rows = s->batch * s->positions;
  if (rows * s->heads == 0 || out_length % (rows * s->heads) != 0 || (int64_t)values != per_row * (int64_t)out_length)
    return range_error(env, "causalAttention: %zu inputs and %zu outputs do not fit %lld × %lld positions of %lld heads", values, out_length,
                       (long long)s->batch, (long long)s->positions, (long long)s->heads);
  s->d_head = (int64_t)out_length / (rows * s->heads);
  s->stride = per_row * s->heads * s->d_head;
  s->scale = (float)scale;
  s->portable = portable;
  s->bias = NULL;
  return 1;
}

// causalAttention(q, k, v, out, batch, positions, heads, scale, portable): q, k, v, out Float32Array
// [batch, positions, heads · d_head]; portable forces that path.
static napi_value CausalAttention(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  float* data[4];
  size_t length[4];
  const char* names[4] = {"q", "k", "v", "out"};
  if (!get_args(env, info, 9, argv, "causalAttention(q, k, v, out, batch, positions, heads, scale, portable)")) return NULL;
  for (int i = 0; i < 4; i++)
    if (!typed_arg(env, argv[i], napi_float32_array, names[i], (void**)&data[i], &length[i])) return NULL;
  if (length[1] != length[0] || length[2] != length[0]) return range_error(env, "causalAttention: q, k and v differ in length"), NULL;
  AttentionShape s;
  if (!shape_args(env, argv + 4, length[0], 1, length[3], &s)) return NULL;
  return run_items(env, &s, data[0], data[1], data[2], data[3]);
}

// causalAttentionPacked(qkv, bias, out, batch, positions, heads, scale, portable): qkv Float32Array
// [batch, positions, q | k | v], bias [q | k | v] or null, out [batch, positions, heads · d_head].
static napi_value CausalAttentionPacked(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  float *qkv, *bias = NULL, *out;
  size_t qkv_length, bias_length = 0, out_length;
  napi_valuetype bias_type;
  if (!get_args(env, info, 8, argv, "causalAttentionPacked(qkv, bias, out, batch, positions, heads, scale, portable)") ||
      !typed_arg(env, argv[0], napi_float32_array, "qkv", (void**)&qkv, &qkv_length) ||
      napi_typeof(env, argv[1], &bias_type) != napi_ok ||
      (bias_type != napi_null && !typed_arg(env, argv[1], napi_float32_array, "bias", (void**)&bias, &bias_length)) ||
      !typed_arg(env, argv[2], napi_float32_array, "out", (void**)&out, &out_length))
    return NULL;
  AttentionShape s;
  if (!shape_args(env, argv + 3, qkv_length, 3, out_length, &s)) return NULL;
  if (bias && (int64_t)bias_length != s.stride) return range_error(env, "causalAttentionPacked: bias holds %zu values, not %lld", bias_length, (long long)s.stride), NULL;
  s.bias = bias;
  int64_t hidden = s.heads * s.d_head;
  return run_items(env, &s, qkv, qkv + hidden, qkv + 2 * hidden, out);
}

// causalAttentionVectorized(dHead) → whether heads of dHead values take the vectorized path on this CPU. The graph
// builder asks: the portable loop is far slower than onnxruntime's own Attention, so it is only a fallback.
static napi_value CausalAttentionVectorized(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  int64_t d_head;
  if (!get_args(env, info, 1, argv, "causalAttentionVectorized(dHead)") || !int_arg(env, argv[0], "dHead", &d_head)) return NULL;
#ifdef HAVE_AVX512
  AttentionShape s = {.d_head = d_head};
  bool yes = d_head > 0 && vectorized(&s);
#else
  bool yes = false;
#endif
  napi_get_boolean(env, yes, &result);
  return result;
}

napi_status register_attention(napi_env env, napi_value exports) {
  napi_status status = define_function(env, exports, "causalAttention", CausalAttention);
  if (status == napi_ok) status = define_function(env, exports, "causalAttentionPacked", CausalAttentionPacked);
  return status != napi_ok ? status : define_function(env, exports, "causalAttentionVectorized", CausalAttentionVectorized);
}
