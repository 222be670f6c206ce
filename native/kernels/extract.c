// Kernels of the extract stage: the passes over a batch's token-major activations [tokens, width] that feed the
// per-neuron moments and histogram (src/stats/moments.ts), the top-k heaps (src/stats/top-activations.ts) and the
// neuron-major shard buffer (src/stages/extract/shard-buffer.ts). The JavaScript fallback (src/stats/kernels.ts)
// follows the same contract.
//
// Every float64 sum runs over the tokens in order, one neuron at a time, as in JavaScript: the loops vectorize
// across neurons, which leaves each neuron's order (and so its rounding) unchanged. -ffp-contract=off keeps the
// compiler from fusing a multiply and an add, which JavaScript never does.
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

// The study's histogram (moments.ts): edges torch.linspace(−10, 15, 256), computed with the same float64
// expression as in JavaScript; bin = the number of edges strictly below x, so 257 bins.
enum { EDGES = 256, BINS = EDGES + 1 };
static const double EDGE_LO = -10, EDGE_HI = 15;
static double edges[EDGES];
static double edges_per_unit;

static void init_edges(void) {
  for (int i = 0; i < EDGES; i++) edges[i] = EDGE_LO + ((EDGE_HI - EDGE_LO) * i) / (EDGES - 1);
  edges_per_unit = (EDGES - 1) / (EDGE_HI - EDGE_LO);
}

static inline int is_finite(double x) { return x - x == 0; }  // as moments.ts tests it

// histogramBin of moments.ts, for a finite x, step for step: the end bins by comparison, else the arithmetic
// estimate, one off at most (only within rounding of an edge), corrected by one step.
static int32_t histogram_bin(double x) {
  if (x <= EDGE_LO) return 0;
  if (x > EDGE_HI) return BINS - 1;
  int32_t i = (int32_t)ceil((x - EDGE_LO) * edges_per_unit);
  if (i < 1) i = 1;
  else if (i > EDGES - 1) i = EDGES - 1;
  if (x <= edges[i - 1]) i--;
  else if (x > edges[i]) i++;
  return i;
}

// The same bin without a table lookup, so that a row of values vectorizes, or −1 where only histogram_bin can
// tell. u = (x − lo)·255/25 in float64 is within 1e−13 of its exact value and every float64 edge within 1e−13 of
// its exact value (in units of u); so when u is more than 1e−6 from an integer, x is not within rounding of an
// edge, ceil(u) is the number of edges below x, and histogram_bin's correction would change nothing.
static inline int32_t quick_bin(double x) {
  double inside = x > EDGE_LO ? (x < EDGE_HI ? x : EDGE_HI) : EDGE_LO;
  double u = (inside - EDGE_LO) * edges_per_unit;
  double estimate = ceil(u);
  int32_t i = estimate - u < 1e-6 || u - (estimate - 1) < 1e-6 ? -1 : (int32_t)estimate;
  return x <= EDGE_LO ? 0 : x > EDGE_HI ? BINS - 1 : i;
}

// Pass 1 over the tokens whose valid flag is set (every token when valid is NULL): count, Σx in token order, x > 0
// and the histogram of the finite values; non-finite values are only counted. bins: scratch of `width` entries.
VECTOR_CLONES
static void moment_sums(const float* chunk, int64_t tokens, int64_t width, const uint8_t* valid, double* restrict count,
                        double* restrict sum, double* restrict positive, double* restrict non_finite,
                        double* restrict histogram, int32_t* restrict bins) {
  for (int64_t t = 0; t < tokens; t++) {
    if (valid && !valid[t]) continue;
    const float* row = chunk + t * width;
    for (int64_t j = 0; j < width; j++) {
      double x = row[j];
      double finite = is_finite(x);
      count[j] += finite;
      sum[j] += finite ? x : 0.0;  // sum is never −0, so adding +0 leaves it as it is
      positive[j] += (x > 0) * finite;
      non_finite[j] += 1 - finite;
    }
    for (int64_t j = 0; j < width; j++) bins[j] = quick_bin(row[j]);
    for (int64_t j = 0; j < width; j++) {
      if (is_finite(row[j])) histogram[j * BINS + (bins[j] >= 0 ? bins[j] : histogram_bin(row[j]))] += 1;
    }
  }
}

// Pass 2: Σd, Σd², Σd³ (as d²·d) and Σd⁴ (as d²·d²) of d = x − mean[j] over the same values, in token order.
VECTOR_CLONES
static void power_sums(const float* chunk, int64_t tokens, int64_t width, const uint8_t* valid, const double* restrict mean,
                       double* restrict s1, double* restrict s2, double* restrict s3, double* restrict s4) {
  for (int64_t t = 0; t < tokens; t++) {
    if (valid && !valid[t]) continue;
    const float* row = chunk + t * width;
    for (int64_t j = 0; j < width; j++) {
      if (!is_finite(row[j])) continue;
      double d = (double)row[j] - mean[j];
      double d2 = d * d;
      s1[j] += d;
      s2[j] += d2;
      s3[j] += d2 * d;
      s4[j] += d2 * d2;
    }
  }
}

// One neuron's min-heap of at most k entries, the weakest at slot 0 (TopActivationsState, one neuron's slice).
typedef struct {
  int32_t* size;
  double* value;
  int32_t* row;
  int32_t* pos;
} Heap;

// x ranks below y: a smaller value, or the same value at a later (row, pos).
static inline int weaker(double xv, int32_t xr, int32_t xp, double yv, int32_t yr, int32_t yp) {
  return xv < yv || (xv == yv && (xr > yr || (xr == yr && xp > yp)));
}

static inline void heap_move(Heap h, int64_t from, int64_t to) {
  h.value[to] = h.value[from];
  h.row[to] = h.row[from];
  h.pos[to] = h.pos[from];
}

// offer() of top-activations.ts: insert (v, r, p) when the heap has room or it ranks above the weakest entry.
static void heap_offer(Heap h, int64_t k, double v, int32_t r, int32_t p) {
  int64_t i;
  if (*h.size < k) {
    i = (*h.size)++;
    while (i > 0) {  // sift up
      int64_t parent = (i - 1) >> 1;
      if (!weaker(v, r, p, h.value[parent], h.row[parent], h.pos[parent])) break;
      heap_move(h, parent, i);
      i = parent;
    }
  } else {
    if (!weaker(h.value[0], h.row[0], h.pos[0], v, r, p)) return;
    i = 0;
    for (;;) {  // sift down from the root, which the new entry replaces
      int64_t child = 2 * i + 1;
      if (child >= k) break;
      if (child + 1 < k && weaker(h.value[child + 1], h.row[child + 1], h.pos[child + 1], h.value[child], h.row[child], h.pos[child])) child++;
      if (!weaker(h.value[child], h.row[child], h.pos[child], v, r, p)) break;
      heap_move(h, child, i);
      i = child;
    }
  }
  h.value[i] = v;
  h.row[i] = r;
  h.pos[i] = p;
}

static inline double heap_floor(Heap h, int64_t k) { return *h.size < k ? -INFINITY : h.value[0]; }

// Offers every finite value at a valid token to its neuron's heap. floor[j] is the weakest kept value: most
// values fail that one comparison, which also skips NaN.
static void top_k(const float* chunk, int64_t tokens, int64_t width, const uint8_t* valid, int64_t first_row, int64_t n_pos,
                  Heap all, int64_t k, double* floor) {
  for (int64_t j = 0; j < width; j++) {
    Heap h = {all.size + j, all.value + j * k, all.row + j * k, all.pos + j * k};
    floor[j] = heap_floor(h, k);
  }
  for (int64_t t = 0; t < tokens; t++) {
    if (valid && !valid[t]) continue;
    const float* row = chunk + t * width;
    for (int64_t j = 0; j < width; j++) {
      double x = row[j];
      if (!(x >= floor[j]) || x - x != 0) continue;
      Heap h = {all.size + j, all.value + j * k, all.row + j * k, all.pos + j * k};
      heap_offer(h, k, x, (int32_t)(first_row + t / n_pos), (int32_t)(t % n_pos));
      floor[j] = heap_floor(h, k);
    }
  }
}

enum { SCATTER_BLOCK = 64 };  // tokens per block: 256 bytes of each output row (measured: 16 to 128 are close)

// Transposes the valid tokens of [tokens, width] into columns column… of the rows of out [·, out_tokens], a
// block of tokens at a time, so that each output row is written a few whole cache lines at once instead of one
// value per line (and per page) visited.
VECTOR_CLONES
static void scatter(const float* chunk, const int64_t* valid_tokens, int64_t n_valid, int64_t width, float* out,
                    int64_t out_tokens, int64_t column) {
  for (int64_t b = 0; b < n_valid; b += SCATTER_BLOCK) {
    int64_t n = n_valid - b < SCATTER_BLOCK ? n_valid - b : SCATTER_BLOCK;
    const float* rows[SCATTER_BLOCK];
    for (int64_t i = 0; i < n; i++) rows[i] = chunk + valid_tokens[b + i] * width;
    for (int64_t j = 0; j < width; j++) {
      float* dst = out + j * out_tokens + column + b;
      for (int64_t i = 0; i < n; i++) dst[i] = rows[i][j];
    }
  }
}

enum { FLOAT16_MAX = 65504 };

// float32 → IEEE binary16 bits, round to nearest even, subnormals included (F. Giesen's float_to_half_fast3_rtne):
// both paths are computed and one selected, so the loop vectorizes. Only called on |x| ≤ 65504.
static inline uint16_t float_to_half(float value) {
  union { float f; uint32_t u; } x = {value}, subnormal_magic = {.u = ((127 - 15) + (23 - 10) + 1) << 23};
  uint32_t sign = x.u & 0x80000000u;
  x.u ^= sign;
  // |x| < 2^-14: the half is subnormal or zero. Adding the magic 0.5 aligns the 10 mantissa bits at the bottom
  // of the float, and the float addition rounds them to nearest even.
  union { float f; uint32_t u; } aligned = {x.f + subnormal_magic.f};
  uint32_t small = aligned.u - subnormal_magic.u;
  // Normal: rebias the exponent and round the 13 dropped mantissa bits to nearest even.
  uint32_t normal = (x.u + ((uint32_t)(15 - 127) << 23) + 0xfff + ((x.u >> 13) & 1)) >> 13;
  return (uint16_t)((x.u < (113u << 23) ? small : normal) | (sign >> 16));
}

// Encodes values as binary16 into out; returns -1, or the index of the first value that float16 cannot hold
// (|x| > 65504 or NaN: the reference study wrote those as ±Inf), then out is incomplete.
VECTOR_CLONES
static int64_t to_float16(const float* values, int64_t n, uint16_t* out) {
  enum { BLOCK = 4096 };
  for (int64_t start = 0; start < n; start += BLOCK) {
    int64_t end = n - start < BLOCK ? n : start + BLOCK;
    int out_of_range = 0;
    for (int64_t i = start; i < end; i++) out_of_range |= !(fabsf(values[i]) <= FLOAT16_MAX);
    if (out_of_range) {
      for (int64_t i = start; i < end; i++) {
        if (!(fabsf(values[i]) <= FLOAT16_MAX)) return i;
      }
    }
    for (int64_t i = start; i < end; i++) out[i] = float_to_half(values[i]);
  }
  return -1;
}

// ---- N-API wrappers ----

typedef struct {
  float* data;
  int64_t tokens;
  int64_t width;
  uint8_t* valid;  // NULL: every token
} Chunk;

// chunk: Float32Array [tokens, width], tokens, width, valid: Uint8Array [tokens] or undefined (argv[0..3]).
static int chunk_args(napi_env env, napi_value* argv, Chunk* c) {
  size_t length, valid_length;
  napi_valuetype valid_type;
  if (!typed_arg(env, argv[0], napi_float32_array, "chunk", (void**)&c->data, &length) ||
      !int_arg(env, argv[1], "tokens", &c->tokens) || !int_arg(env, argv[2], "width", &c->width) ||
      napi_typeof(env, argv[3], &valid_type) != napi_ok) {
    return 0;
  }
  c->valid = NULL;
  if (valid_type != napi_undefined) {
    if (!typed_arg(env, argv[3], napi_uint8_array, "valid", (void**)&c->valid, &valid_length)) return 0;
    if ((int64_t)valid_length < c->tokens) return range_error(env, "kernels: valid has %zu entries, need %lld", valid_length, (long long)c->tokens);
  }
  if ((int64_t)length < c->tokens * c->width) {
    return range_error(env, "kernels: chunk has %zu values, need %lld × %lld", length, (long long)c->tokens, (long long)c->width);
  }
  return 1;
}

// Five Float64Array arguments (argv[0..4]): the outputs of the moment kernels, each with at least need[i] values.
static int f64_args(napi_env env, napi_value* argv, const char* const names[5], const int64_t need[5], double* out[5]) {
  for (int i = 0; i < 5; i++) {
    size_t length;
    if (!typed_arg(env, argv[i], napi_float64_array, names[i], (void**)&out[i], &length)) return 0;
    if ((int64_t)length < need[i]) return range_error(env, "kernels: %s has %zu values, need %lld", names[i], length, (long long)need[i]);
  }
  return 1;
}

// A kernel's scratch array of `count` elements (free it); NULL with a JS error thrown when memory is out.
static void* scratch(napi_env env, int64_t count, size_t size) {
  void* p = malloc(size * (size_t)(count > 0 ? count : 1));
  if (!p) napi_throw_error(env, NULL, "kernels: out of memory");
  return p;
}

// momentSums(chunk, tokens, width, valid, count, sum, positive, nonFinite, histogram)
static napi_value MomentSums(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  if (!get_args(env, info, 9, argv, "momentSums(chunk, tokens, width, valid, count, sum, positive, nonFinite, histogram)")) return NULL;
  static const char* const names[5] = {"count", "sum", "positive", "nonFinite", "histogram"};
  Chunk c;
  double* o[5];
  if (!chunk_args(env, argv, &c)) return NULL;
  const int64_t need[5] = {c.width, c.width, c.width, c.width, c.width * BINS};
  int32_t* bins;
  if (!f64_args(env, argv + 4, names, need, o) || !(bins = scratch(env, c.width, sizeof *bins))) return NULL;
  moment_sums(c.data, c.tokens, c.width, c.valid, o[0], o[1], o[2], o[3], o[4], bins);
  free(bins);
  return NULL;
}

// powerSums(chunk, tokens, width, valid, mean, s1, s2, s3, s4)
static napi_value PowerSums(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  if (!get_args(env, info, 9, argv, "powerSums(chunk, tokens, width, valid, mean, s1, s2, s3, s4)")) return NULL;
  static const char* const names[5] = {"mean", "s1", "s2", "s3", "s4"};
  Chunk c;
  double* o[5];
  if (!chunk_args(env, argv, &c)) return NULL;
  const int64_t need[5] = {c.width, c.width, c.width, c.width, c.width};
  if (!f64_args(env, argv + 4, names, need, o)) return NULL;
  power_sums(c.data, c.tokens, c.width, c.valid, o[0], o[1], o[2], o[3], o[4]);
  return NULL;
}

// A typed-array property of an object (the heap state), with at least `need` elements.
static int typed_property(napi_env env, napi_value object, const char* name, napi_typedarray_type type, int64_t need, void** data) {
  napi_value value;
  size_t length;
  if (napi_get_named_property(env, object, name, &value) != napi_ok || !typed_arg(env, value, type, name, data, &length)) return 0;
  if ((int64_t)length < need) return range_error(env, "kernels: heap %s has %zu values, need %lld", name, length, (long long)need);
  return 1;
}

// topK(chunk, tokens, width, valid, firstRow, nPos, neuronOffset, heap: { k, size, value, row, pos })
static napi_value TopK(napi_env env, napi_callback_info info) {
  napi_value argv[8], k_value;
  if (!get_args(env, info, 8, argv, "topK(chunk, tokens, width, valid, firstRow, nPos, neuronOffset, heap)")) return NULL;
  Chunk c;
  int64_t first_row, n_pos, offset, k;
  if (!chunk_args(env, argv, &c) || !int_arg(env, argv[4], "firstRow", &first_row) || !int_arg(env, argv[5], "nPos", &n_pos) ||
      !int_arg(env, argv[6], "neuronOffset", &offset) || napi_get_named_property(env, argv[7], "k", &k_value) != napi_ok ||
      !int_arg(env, k_value, "heap k", &k)) {
    return NULL;
  }
  if (n_pos < 1 || k < 1) {
    range_error(env, "kernels: nPos and heap k must be positive");
    return NULL;
  }
  int64_t neurons = offset + c.width;
  Heap heap;
  if (!typed_property(env, argv[7], "size", napi_int32_array, neurons, (void**)&heap.size) ||
      !typed_property(env, argv[7], "value", napi_float64_array, neurons * k, (void**)&heap.value) ||
      !typed_property(env, argv[7], "row", napi_int32_array, neurons * k, (void**)&heap.row) ||
      !typed_property(env, argv[7], "pos", napi_int32_array, neurons * k, (void**)&heap.pos)) {
    return NULL;
  }
  double* floor = scratch(env, c.width, sizeof *floor);
  if (!floor) return NULL;
  Heap slice = {heap.size + offset, heap.value + offset * k, heap.row + offset * k, heap.pos + offset * k};
  top_k(c.data, c.tokens, c.width, c.valid, first_row, n_pos, slice, k, floor);
  free(floor);
  return NULL;
}

// scatterNeuronMajor(chunk, tokens, width, valid, out, outTokens, column): out[j·outTokens + column + i] = the
// i-th valid token's value j; returns the column after the last one written.
static napi_value ScatterNeuronMajor(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  if (!get_args(env, info, 7, argv, "scatterNeuronMajor(chunk, tokens, width, valid, out, outTokens, column)")) return NULL;
  Chunk c;
  float* out;
  size_t out_length;
  int64_t out_tokens, column;
  if (!chunk_args(env, argv, &c) || !typed_arg(env, argv[4], napi_float32_array, "out", (void**)&out, &out_length) ||
      !int_arg(env, argv[5], "outTokens", &out_tokens) || !int_arg(env, argv[6], "column", &column)) {
    return NULL;
  }
  int64_t* valid_tokens = scratch(env, c.tokens, sizeof *valid_tokens);
  if (!valid_tokens) return NULL;
  int64_t n_valid = 0;
  for (int64_t t = 0; t < c.tokens; t++) {
    if (!c.valid || c.valid[t]) valid_tokens[n_valid++] = t;
  }
  if (column + n_valid > out_tokens || (c.width > 0 && (int64_t)out_length < c.width * out_tokens)) {
    free(valid_tokens);
    range_error(env, "kernels: %lld valid tokens from column %lld do not fit %zu values of rows of %lld", (long long)n_valid,
                (long long)column, out_length, (long long)out_tokens);
    return NULL;
  }
  scatter(c.data, valid_tokens, n_valid, c.width, out, out_tokens, column);
  free(valid_tokens);
  napi_value result;
  napi_create_double(env, (double)(column + n_valid), &result);
  return result;
}

// toFloat16(values, out): out[i] = binary16 bits of values[i]; returns -1 or the first index float16 cannot hold.
static napi_value ToFloat16(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv, "toFloat16(values, out)")) return NULL;
  float* values;
  uint16_t* out;
  size_t n, out_length;
  if (!typed_arg(env, argv[0], napi_float32_array, "values", (void**)&values, &n) ||
      !typed_arg(env, argv[1], napi_uint16_array, "out", (void**)&out, &out_length)) {
    return NULL;
  }
  if (out_length < n) {
    range_error(env, "kernels: out has %zu values, need %zu", out_length, n);
    return NULL;
  }
  napi_value result;
  napi_create_double(env, (double)to_float16(values, (int64_t)n, out), &result);
  return result;
}

napi_status register_extract(napi_env env, napi_value exports) {
  static pthread_once_t edges_once = PTHREAD_ONCE_INIT;  // worker threads load the module too
  pthread_once(&edges_once, init_edges);
  napi_status s = define_function(env, exports, "momentSums", MomentSums);
  if (s == napi_ok) s = define_function(env, exports, "powerSums", PowerSums);
  if (s == napi_ok) s = define_function(env, exports, "topK", TopK);
  if (s == napi_ok) s = define_function(env, exports, "scatterNeuronMajor", ScatterNeuronMajor);
  return s == napi_ok ? define_function(env, exports, "toFloat16", ToFloat16) : s;
}
