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

// Bin 103 onwards holds exactly the values x > 0: edge 102 is −10 + (25·102)/255 = 0 in float64, exactly.
enum { POSITIVE_BIN = 103 };

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

enum {
  STRIP = 16,                // neurons per vector of floats
  COUNT_STRIDE = BINS + 1,   // a neuron's counts: its bins, then slot BINS for its non-finite values
};

#ifdef HAVE_AVX512

// Sixteen float32 values' histogram bins (histogram_bin's), BINS where not finite, −1 where this float32 estimate
// cannot tell. u = (x − lo)·255/25 computed in float32 is within 5e−5 of its exact value (x + 10 rounds by at most
// 2^−24·25, 255/25 and the product by 2^−24 relative: each ≤ 1.6e−5 in units of u), and the float64 edges are
// within 1e−13 of theirs, so where u is more than 1e−4 from an integer, ceil(u) is the number of edges below x.
AVX512 static inline __m512i strip_bins(__m512 x, __mmask16 finite) {
  const __m512 lo = _mm512_set1_ps((float)EDGE_LO), hi = _mm512_set1_ps((float)EDGE_HI), margin = _mm512_set1_ps(1e-4f);
  __m512 u = _mm512_mul_ps(_mm512_sub_ps(_mm512_max_ps(_mm512_min_ps(x, hi), lo), lo), _mm512_set1_ps((float)(EDGES - 1) / (float)(EDGE_HI - EDGE_LO)));
  __m512 estimate = _mm512_roundscale_ps(u, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
  __mmask16 undecided = _mm512_cmp_ps_mask(_mm512_sub_ps(estimate, u), margin, _CMP_LT_OQ) |
                        _mm512_cmp_ps_mask(_mm512_sub_ps(u, _mm512_sub_ps(estimate, _mm512_set1_ps(1))), margin, _CMP_LT_OQ);
  __m512i bin = _mm512_mask_mov_epi32(_mm512_cvttps_epi32(estimate), undecided, _mm512_set1_epi32(-1));
  bin = _mm512_mask_mov_epi32(bin, _mm512_cmp_ps_mask(x, lo, _CMP_LE_OQ), _mm512_setzero_si512());
  bin = _mm512_mask_mov_epi32(bin, _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ), _mm512_set1_epi32(BINS - 1));
  return _mm512_mask_mov_epi32(_mm512_set1_epi32(BINS), finite, bin);
}

// The two halves of 16 floats as float64.
AVX512 static inline void widen(__m512 x, __m512d v[2]) {
  v[0] = _mm512_cvtps_pd(_mm512_castps512_ps256(x));
  v[1] = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
}

// Pass 1 of the moments (moment_sums's contract and results), 16 neurons of a token per vector, the chunk read in
// order (its rows come from memory, and the prefetchers only follow sequential reads). Only Σx is summed per value
// in float64 (each neuron's tokens in order, as in moment_sums); every value is binned with vector operations and
// counted in 16-bit counts (width × COUNT_STRIDE, 1.6 MB at d_mlp 3072: they stay in L2), non-finite ones in slot
// BINS. The counts go into histogram, count, positive and non_finite every 65,535 tokens and at the end (x > 0
// exactly when x lies above the edge at 0: bins from POSITIVE_BIN on): integers, so exact either way.
// counts: width × COUNT_STRIDE; at: width.
AVX512 static void moment_sums_avx512(const float* chunk, int64_t tokens, int64_t width, const uint8_t* valid, double* count,
                                      double* sum, double* positive, double* non_finite, double* histogram, uint16_t* counts,
                                      int32_t* at) {
  const __m512i lane_offsets = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(COUNT_STRIDE));
  for (int64_t t0 = 0; t0 < tokens; t0 += UINT16_MAX) {  // 16-bit counts hold up to 65,535 tokens
    const int64_t t1 = tokens - t0 < UINT16_MAX ? tokens : t0 + UINT16_MAX;
    memset(counts, 0, sizeof *counts * (size_t)(width * COUNT_STRIDE));
    for (int64_t t = t0; t < t1; t++) {
      if (valid && !valid[t]) continue;
      const float* row = chunk + t * width;
      for (int64_t j0 = 0; j0 < width; j0 += STRIP) {
        const int nb = width - j0 < STRIP ? (int)(width - j0) : STRIP;
        const __mmask16 lanes = (__mmask16)((1u << nb) - 1);
        __m512 x = _mm512_maskz_loadu_ps(lanes, row + j0);
        __mmask16 finite = _mm512_cmp_ps_mask(_mm512_sub_ps(x, x), _mm512_setzero_ps(), _CMP_EQ_OQ) & lanes;
        __m512d v[2];
        widen(x, v);
        for (int h = 0; h < 2; h++) {
          const __mmask8 f = (__mmask8)(finite >> (8 * h));
          _mm512_mask_storeu_pd(sum + j0 + 8 * h, f, _mm512_add_pd(_mm512_maskz_loadu_pd(f, sum + j0 + 8 * h), v[h]));
        }
        __m512i bins = strip_bins(x, finite);
        __mmask16 undecided = _mm512_cmplt_epi32_mask(bins, _mm512_setzero_si512()) & lanes;
        _mm512_mask_storeu_epi32(at + j0, lanes, _mm512_add_epi32(bins, _mm512_add_epi32(lane_offsets, _mm512_set1_epi32((int)(j0 * COUNT_STRIDE)))));
        while (undecided) {
          const int j = __builtin_ctz(undecided);
          undecided &= undecided - 1;
          at[j0 + j] = (int32_t)((j0 + j) * COUNT_STRIDE) + histogram_bin(row[j0 + j]);
        }
      }
      for (int64_t j = 0; j < width; j++) counts[at[j]]++;
    }
    for (int64_t j = 0; j < width; j++) {
      double* h = histogram + j * BINS;
      const uint16_t* from = counts + j * COUNT_STRIDE;
      uint32_t finite = 0, above = 0;
      for (int b = 0; b < BINS; b++) {
        h[b] += from[b];
        finite += from[b];
        above += b >= POSITIVE_BIN ? from[b] : 0;
      }
      count[j] += finite, positive[j] += above, non_finite[j] += from[BINS];
    }
  }
}

#endif

// A chunk's moments, both passes: count, mean and Σd … Σd⁴ around that mean are the chunk's own (written);
// positive, non_finite and histogram are added into. vectorized: pass 1 on AVX-512 (the CPU must have it), else
// moment_sums; the results are the same bit for bit. scratch: CHUNK_MOMENTS_SCRATCH(width) bytes (pass 1's
// 16-bit counts and bin indices, or moment_sums's bins).
#define CHUNK_MOMENTS_SCRATCH(width) ((size_t)(width) * (COUNT_STRIDE * sizeof(uint16_t) + sizeof(int32_t)))
static void chunk_moments(const float* chunk, int64_t tokens, int64_t width, const uint8_t* valid, double* count, double* mean,
                          double* s1, double* s2, double* s3, double* s4, double* positive, double* non_finite, double* histogram,
                          int vectorized, void* scratch) {
  double* own[] = {count, mean, s1, s2, s3, s4};
  for (int i = 0; i < 6; i++) memset(own[i], 0, sizeof *own[i] * (size_t)width);
#ifdef HAVE_AVX512
  if (vectorized) {
    uint16_t* counts = scratch;
    moment_sums_avx512(chunk, tokens, width, valid, count, mean, positive, non_finite, histogram, counts, (int32_t*)(counts + width * COUNT_STRIDE));
  } else
#endif
    moment_sums(chunk, tokens, width, valid, count, mean, positive, non_finite, histogram, scratch);  // mean holds Σx
  for (int64_t j = 0; j < width; j++) mean[j] = count[j] > 0 ? mean[j] / count[j] : 0;
  power_sums(chunk, tokens, width, valid, mean, s1, s2, s3, s4);
}

// One neuron's min-heap of at most k entries, the weakest at slot 0 (TopActivationsState, one neuron's slice).
typedef struct {
  int32_t* size;
  double* value;
  int32_t* row;
  int32_t* pos;
} Heap;

typedef struct {
  double value;
  int32_t row, pos;
} Entry;

// a ranks above b: a larger value, or the same value at an earlier (row, pos) (top-heap.ts's order).
static inline int stronger(const Entry* a, const Entry* b) {
  return a->value > b->value || (a->value == b->value && (a->row < b->row || (a->row == b->row && a->pos < b->pos)));
}

static int stronger_first(const void* a, const void* b) { return stronger(a, b) ? -1 : stronger(b, a); }

// Sorts entries strongest first: insertion sort for the usual few dozen, qsort beyond.
static void sort_strongest_first(Entry* e, int64_t n) {
  if (n > 64) {
    qsort(e, (size_t)n, sizeof *e, stronger_first);
    return;
  }
  for (int64_t i = 1; i < n; i++) {
    Entry x = e[i];
    int64_t j = i;
    for (; j > 0 && stronger(&x, &e[j - 1]); j--) e[j] = e[j - 1];
    e[j] = x;
  }
}

// Reorders e[0..n) so that its k strongest entries come first, in any order (1 ≤ k < n): quickselect in
// stronger's total order (no two entries tie: each token is at its own row and position).
static void select_strongest(Entry* e, int64_t n, int64_t k) {
  int64_t lo = 0, hi = n - 1, target = k - 1;
  while (lo < hi) {
    const Entry pivot = e[lo + (hi - lo) / 2];
    int64_t i = lo, j = hi;
    while (i <= j) {
      while (stronger(&e[i], &pivot)) i++;
      while (stronger(&pivot, &e[j])) j--;
      if (i <= j) {
        const Entry t = e[i];
        e[i++] = e[j];
        e[j--] = t;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else break;
  }
}

// The k-th largest of a[0..n) (1 ≤ k ≤ n; no NaN), reordering a: quickselect.
static float kth_largest(float* a, int64_t n, int64_t k) {
  int64_t lo = 0, hi = n - 1, target = k - 1;
  while (lo < hi) {
    float pivot = a[lo + (hi - lo) / 2];
    int64_t i = lo, j = hi;
    while (i <= j) {
      while (a[i] > pivot) i++;
      while (a[j] < pivot) j--;
      if (i <= j) {
        float t = a[i];
        a[i++] = a[j];
        a[j--] = t;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else break;
  }
  return a[target];
}

enum { RUN = 16 };  // values compared with the floor at once

// The top k of every neuron of neuron-major rows [neurons, tokens], merged with what its heap holds. Token i is
// (row_of[i], pos_of[i]), in corpus order (the caller checks). The result is the k strongest in top-heap.ts's
// total order, so any algorithm finds the same entries; they are stored sorted weakest first, a valid min-heap,
// as the JavaScript kernel stores them.
//
// Offering every value to a heap cost ~60 ns per offer (mispredicted branches), ~140 offers per neuron per 2048
// tokens. Instead: split the row into `groups` interleaved groups (token i in group i mod groups, groups ≥ k)
// and take each group's largest finite value, a vertical max that vectorizes. The k-th largest of those maxima
// is k distinct values of the row, so it is at most the k-th largest value: a floor that every kept value
// reaches. Only values at or above it become candidates, with the heap's entries; the k strongest of them are
// selected, then sorted.
// Of the values equal to the floor, only the first k can be kept (ties go to the earlier token).
VECTOR_CLONES
static void top_k_rows(const float* rows, int64_t neurons, int64_t tokens, const int32_t* row_of, const int32_t* pos_of,
                       Heap all, int64_t k, int64_t groups, float* maxima, Entry* candidates) {
  for (int64_t j = 0; j < neurons; j++) {
    Heap h = {all.size + j, all.value + j * k, all.row + j * k, all.pos + j * k};
    const float* x = rows + j * tokens;
    for (int64_t g = 0; g < groups; g++) maxima[g] = -INFINITY;
    for (int64_t i0 = 0; i0 < tokens; i0 += groups) {
      int64_t n = tokens - i0 < groups ? tokens - i0 : groups;
      for (int64_t g = 0; g < n; g++) {
        float v = x[i0 + g];
        maxima[g] = v > maxima[g] && v < INFINITY ? v : maxima[g];  // NaN and +∞ are never kept
      }
    }
    float floor = kth_largest(maxima, groups, k);
    if (*h.size == k && h.value[0] > floor) floor = (float)h.value[0];  // heap values come from float32: exact

    int64_t n = 0, ties = 0;
    for (int64_t e = 0; e < *h.size; e++) candidates[n++] = (Entry){h.value[e], h.row[e], h.pos[e]};
    for (int64_t i0 = 0; i0 < tokens; i0 += RUN) {
      int64_t i1 = tokens - i0 < RUN ? tokens : i0 + RUN;
      int any = 0;
      for (int64_t i = i0; i < i1; i++) any |= x[i] >= floor;
      if (!any) continue;
      for (int64_t i = i0; i < i1; i++) {
        if ((x[i] > floor && x[i] < INFINITY) || (x[i] == floor && floor > -INFINITY && ties++ < k)) {
          candidates[n++] = (Entry){x[i], row_of[i], pos_of[i]};
        }
      }
    }
    int64_t m = n < k ? n : k;
    if (n > k) select_strongest(candidates, n, k);  // only the k kept are sorted
    sort_strongest_first(candidates, m);
    *h.size = (int32_t)m;
    for (int64_t e = 0; e < m; e++) {  // weakest first
      const Entry* from = &candidates[m - 1 - e];
      h.value[e] = from->value, h.row[e] = from->row, h.pos[e] = from->pos;
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

#ifdef HAVE_AVX512
// r[i] = 16 values of row i → r[j] = value j of the 16 rows: three rounds of shuffles, 64 in all.
AVX512 static inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int p = 0; p < 8; p++) {  // within 128-bit lanes: t[2p] lane L = r2p(4L), r2p+1(4L), r2p(4L+1), r2p+1(4L+1)
    t[2 * p] = _mm512_unpacklo_ps(r[2 * p], r[2 * p + 1]);
    t[2 * p + 1] = _mm512_unpackhi_ps(r[2 * p], r[2 * p + 1]);
  }
  __m512 s[16];
  for (int q = 0; q < 4; q++) {  // s[4q + k] lane L = column 4L + k of rows 4q … 4q + 3
    const __m512d lo = _mm512_castps_pd(t[4 * q]), lo2 = _mm512_castps_pd(t[4 * q + 2]);
    const __m512d hi = _mm512_castps_pd(t[4 * q + 1]), hi2 = _mm512_castps_pd(t[4 * q + 3]);
    s[4 * q] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo, lo2));
    s[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo, lo2));
    s[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(hi, hi2));
    s[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(hi, hi2));
  }
  for (int k = 0; k < 4; k++) {  // a 4 × 4 transpose of 128-bit lanes: column 4L + k, lane q = s[4q + k] lane L
    __m512 u0 = _mm512_shuffle_f32x4(s[k], s[4 + k], 0x44), u1 = _mm512_shuffle_f32x4(s[k], s[4 + k], 0xEE);
    __m512 u2 = _mm512_shuffle_f32x4(s[8 + k], s[12 + k], 0x44), u3 = _mm512_shuffle_f32x4(s[8 + k], s[12 + k], 0xEE);
    r[k] = _mm512_shuffle_f32x4(u0, u2, 0x88), r[4 + k] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
    r[8 + k] = _mm512_shuffle_f32x4(u1, u3, 0x88), r[12 + k] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
  }
}

// scatter's copy, 16 tokens × 16 neurons per register transpose instead of one value at a time. scatter's column
// loads fetched one cache line per token, and at GPT-2's widths the rows lie a multiple of 4 KB apart, so a block's
// lines shared one L1 set and came again from L2 for every neuron. A block of 16 tokens (64 bytes of each output row) was faster
// than 32, 64 or 128 here: fewer rows are read at once.
AVX512 static void scatter_avx512(const float* chunk, const int64_t* valid_tokens, int64_t n_valid, int64_t width, float* out,
                                  int64_t out_tokens, int64_t column) {
  enum { TILE = 16 };
  for (int64_t b = 0; b < n_valid; b += TILE) {
    const int n = n_valid - b < TILE ? (int)(n_valid - b) : TILE;
    const float* rows[TILE];
    for (int i = 0; i < TILE; i++) rows[i] = chunk + valid_tokens[b + (i < n ? i : n - 1)] * width;  // repeats are not stored
    const __mmask16 keep = (__mmask16)((1u << n) - 1);
    int64_t j0 = 0;
    for (; j0 + TILE <= width; j0 += TILE) {
      __m512 r[TILE];
      for (int i = 0; i < TILE; i++) r[i] = _mm512_loadu_ps(rows[i] + j0);
      transpose16(r);
      for (int j = 0; j < TILE; j++) _mm512_mask_storeu_ps(out + (j0 + j) * out_tokens + column + b, keep, r[j]);
    }
    for (; j0 < width; j0++) {  // the neurons past the last whole tile
      for (int i = 0; i < n; i++) out[j0 * out_tokens + column + b + i] = rows[i][j0];
    }
  }
}
#endif

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

// n Float64Array arguments (argv[0..n)): the outputs of the moment kernels, each with at least need[i] values.
static int f64_args(napi_env env, napi_value* argv, int n, const char* const names[], const int64_t need[], double* out[]) {
  for (int i = 0; i < n; i++) {
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

// chunkMoments(chunk, tokens, width, valid, count, mean, s1, s2, s3, s4, positive, nonFinite, histogram, portable):
// portable = true takes the loops every CPU runs instead of the AVX-512 ones (the tests compare both).
static napi_value ChunkMoments(napi_env env, napi_callback_info info) {
  static const char* const names[9] = {"count", "mean", "s1", "s2", "s3", "s4", "positive", "nonFinite", "histogram"};
  napi_value argv[14];
  Chunk c;
  double* o[9];
  bool portable;
  if (!get_args(env, info, 14, argv, "chunkMoments(chunk, tokens, width, valid, count, mean, s1, s2, s3, s4, positive, nonFinite, histogram, portable)") ||
      !chunk_args(env, argv, &c) || !bool_arg(env, argv[13], "portable", &portable)) {
    return NULL;
  }
  int64_t need[9];
  for (int i = 0; i < 9; i++) need[i] = i == 8 ? c.width * BINS : c.width;
  if (!f64_args(env, argv + 4, 9, names, need, o)) return NULL;
  void* space = scratch(env, CHUNK_MOMENTS_SCRATCH(c.width), 1);
  if (!space) return NULL;
  int vectorized = 0;
#ifdef HAVE_AVX512
  vectorized = !portable && __builtin_cpu_supports("avx512f");
#endif
  chunk_moments(c.data, c.tokens, c.width, c.valid, o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7], o[8], vectorized, space);
  free(space);
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

// topKRows(rows, neurons, tokens, rowOf, posOf, neuronOffset, heap: { k, size, value, row, pos })
static napi_value TopKRows(napi_env env, napi_callback_info info) {
  napi_value argv[7], k_value;
  if (!get_args(env, info, 7, argv, "topKRows(rows, neurons, tokens, rowOf, posOf, neuronOffset, heap)")) return NULL;
  float* rows;
  int32_t *row_of, *pos_of;
  size_t length, row_of_length, pos_of_length;
  int64_t neurons, tokens, offset, k;
  if (!typed_arg(env, argv[0], napi_float32_array, "rows", (void**)&rows, &length) || !int_arg(env, argv[1], "neurons", &neurons) ||
      !int_arg(env, argv[2], "tokens", &tokens) ||
      !typed_arg(env, argv[3], napi_int32_array, "rowOf", (void**)&row_of, &row_of_length) ||
      !typed_arg(env, argv[4], napi_int32_array, "posOf", (void**)&pos_of, &pos_of_length) ||
      !int_arg(env, argv[5], "neuronOffset", &offset) || napi_get_named_property(env, argv[6], "k", &k_value) != napi_ok ||
      !int_arg(env, k_value, "heap k", &k)) {
    return NULL;
  }
  if (neurons < 0 || tokens < 0 || offset < 0 || k < 1) {
    range_error(env, "kernels: neurons, tokens and neuronOffset must not be negative, heap k must be positive");
    return NULL;
  }
  if ((int64_t)length < neurons * tokens || (int64_t)row_of_length < tokens || (int64_t)pos_of_length < tokens) {
    range_error(env, "kernels: rows (%zu values), rowOf (%zu) or posOf (%zu) too short for %lld neurons × %lld tokens", length,
                row_of_length, pos_of_length, (long long)neurons, (long long)tokens);
    return NULL;
  }
  int64_t need = offset + neurons;
  Heap heap;
  if (!typed_property(env, argv[6], "size", napi_int32_array, need, (void**)&heap.size) ||
      !typed_property(env, argv[6], "value", napi_float64_array, need * k, (void**)&heap.value) ||
      !typed_property(env, argv[6], "row", napi_int32_array, need * k, (void**)&heap.row) ||
      !typed_property(env, argv[6], "pos", napi_int32_array, need * k, (void**)&heap.pos)) {
    return NULL;
  }
  int64_t groups = (2 * k + RUN - 1) / RUN * RUN;  // a multiple of the vector width, at least 2k
  if (groups < 64) groups = 64;
  float* maxima = scratch(env, groups, sizeof *maxima);
  Entry* candidates = maxima ? scratch(env, k + tokens, sizeof *candidates) : NULL;
  if (candidates) {
    Heap slice = {heap.size + offset, heap.value + offset * k, heap.row + offset * k, heap.pos + offset * k};
    top_k_rows(rows, neurons, tokens, row_of, pos_of, slice, k, groups, maxima, candidates);
  }
  free(maxima);
  free(candidates);
  return NULL;
}

// scatterNeuronMajor(chunk, tokens, width, valid, out, outTokens, column, portable): out[j·outTokens + column + i] =
// the i-th valid token's value j; returns the column after the last one written. portable: without AVX-512.
static napi_value ScatterNeuronMajor(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  if (!get_args(env, info, 8, argv, "scatterNeuronMajor(chunk, tokens, width, valid, out, outTokens, column, portable)")) return NULL;
  Chunk c;
  float* out;
  size_t out_length;
  int64_t out_tokens, column;
  bool portable;
  if (!chunk_args(env, argv, &c) || !typed_arg(env, argv[4], napi_float32_array, "out", (void**)&out, &out_length) ||
      !int_arg(env, argv[5], "outTokens", &out_tokens) || !int_arg(env, argv[6], "column", &column) ||
      !bool_arg(env, argv[7], "portable", &portable)) {
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
#ifdef HAVE_AVX512
  if (!portable && __builtin_cpu_supports("avx512f")) scatter_avx512(c.data, valid_tokens, n_valid, c.width, out, out_tokens, column);
  else
#endif
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
  napi_status s = define_function(env, exports, "chunkMoments", ChunkMoments);
  if (s == napi_ok) s = define_function(env, exports, "topKRows", TopKRows);
  if (s == napi_ok) s = define_function(env, exports, "scatterNeuronMajor", ScatterNeuronMajor);
  return s == napi_ok ? define_function(env, exports, "toFloat16", ToFloat16) : s;
}
