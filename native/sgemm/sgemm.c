// N-API binding of OpenBLAS cblas_sgemm for seedscope's correlation GEMM (SPEC §7): out = A·Bᵀ with both
// operands [rows, k] row-major, the contract of `Gemm` in src/stats/gemm.ts, and out = A·B (`GemmNN`). The
// Float32Arrays are used in place (no copies); shapes are checked here so a bad call throws a JS error instead
// of reading out of bounds.
#include <cblas.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define CHECK(env, call)                                                      \
  do {                                                                        \
    if ((call) != napi_ok) {                                                  \
      napi_throw_error((env), NULL, "sgemm: N-API call failed: " #call);      \
      return NULL;                                                            \
    }                                                                         \
  } while (0)

// The data pointer and length (in elements) of a Float32Array argument; false (with a JS error thrown) otherwise.
static int float32_arg(napi_env env, napi_value value, const char* name, float** data, size_t* length) {
  bool is_typedarray = false;
  napi_typedarray_type type;
  void* ptr = NULL;
  if (napi_is_typedarray(env, value, &is_typedarray) != napi_ok || !is_typedarray ||
      napi_get_typedarray_info(env, value, &type, length, &ptr, NULL, NULL) != napi_ok ||
      type != napi_float32_array) {
    char message[96];
    snprintf(message, sizeof message, "sgemm: %s must be a Float32Array", name);
    napi_throw_type_error(env, NULL, message);
    return 0;
  }
  *data = ptr;
  return 1;
}

// A dimension: an integer in [0, 2^31) (cblas takes int).
static int dim_arg(napi_env env, napi_value value, const char* name, int64_t* out) {
  double d;
  if (napi_get_value_double(env, value, &d) != napi_ok || !(d >= 0 && d < 2147483648.0) || d != (double)(int64_t)d) {
    char message[96];
    snprintf(message, sizeof message, "sgemm: %s must be an integer in [0, 2^31)", name);
    napi_throw_range_error(env, NULL, message);
    return 0;
  }
  *out = (int64_t)d;
  return 1;
}

static int overlaps(const float* x, size_t nx, const float* y, size_t ny) {
  return nx > 0 && ny > 0 && x < y + ny && y < x + nx;
}

// The six arguments (a, b, m, n, k, out) of both products, checked: Float32Arrays long enough for the shape
// (longer is fine: only the leading elements are used, as with the JS fallback) and out apart from a and b.
// Returns 1 when there is a product to compute, -1 when out is already final (an empty shape), 0 when a JS
// error was thrown.
typedef struct {
  float *a, *b, *out;
  int64_t m, n, k;
} GemmArgs;

static int gemm_args(napi_env env, napi_callback_info info, const char* name, GemmArgs* g) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 6) {
    char message[96];
    snprintf(message, sizeof message, "%s: expected 6 arguments (a, b, m, n, k, out)", name);
    napi_throw_type_error(env, NULL, message);
    return 0;
  }
  size_t a_len, b_len, out_len;
  if (!float32_arg(env, argv[0], "a", &g->a, &a_len) || !float32_arg(env, argv[1], "b", &g->b, &b_len) ||
      !dim_arg(env, argv[2], "m", &g->m) || !dim_arg(env, argv[3], "n", &g->n) || !dim_arg(env, argv[4], "k", &g->k) ||
      !float32_arg(env, argv[5], "out", &g->out, &out_len)) {
    return 0;
  }
  int64_t m = g->m, n = g->n, k = g->k;
  if ((uint64_t)a_len < (uint64_t)(m * k) || (uint64_t)b_len < (uint64_t)(n * k) || (uint64_t)out_len < (uint64_t)(m * n)) {
    char message[256];
    snprintf(message, sizeof message,
             "%s: operands too short for m=%lld n=%lld k=%lld: a has %zu (need %lld), b has %zu (need %lld), "
             "out has %zu (need %lld)",
             name, (long long)m, (long long)n, (long long)k, a_len, (long long)(m * k), b_len, (long long)(n * k), out_len,
             (long long)(m * n));
    napi_throw_range_error(env, NULL, message);
    return 0;
  }
  // BLAS leaves the result undefined when out aliases an operand; say so rather than return garbage.
  if (overlaps(g->out, (size_t)(m * n), g->a, (size_t)(m * k)) || overlaps(g->out, (size_t)(m * n), g->b, (size_t)(n * k))) {
    char message[96];
    snprintf(message, sizeof message, "%s: out overlaps a or b (they must be separate memory)", name);
    napi_throw_error(env, NULL, message);
    return 0;
  }
  if (m > 0 && n > 0 && k == 0) memset(g->out, 0, (size_t)(m * n) * sizeof(float));  // an empty sum; cblas rejects lda = 0
  return m > 0 && n > 0 && k > 0 ? 1 : -1;  // -1: nothing left to compute
}

// sgemm(a, b, m, n, k, out): out[i·n + j] = Σ_p a[i·k + p]·b[j·k + p], b is [n, k]; overwrites out. When a and b
// are the same memory and m = n, the product is computed as a symmetric rank-k update (SYRK).
static napi_value Sgemm(napi_env env, napi_callback_info info) {
  GemmArgs g;
  if (gemm_args(env, info, "gemm", &g) != 1) return NULL;
  int m = (int)g.m, n = (int)g.n, k = (int)g.k;
  if (g.a == g.b && m == n) {
    // A·Aᵀ (a layer's within-layer sums) is symmetric: SYRK computes the upper triangle, half the FLOPs, and the
    // lower one is mirrored from it.
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, n, k, 1.0f, g.a, k, 0.0f, g.out, n);
    for (int64_t i = 1; i < n; i++) {
      for (int64_t j = 0; j < i; j++) g.out[i * n + j] = g.out[j * n + i];
    }
    return NULL;
  }
  // Row-major A [m, k] times (row-major B [n, k])ᵀ: lda = ldb = k, ldc = n.
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, g.a, k, g.b, k, 0.0f, g.out, n);
  return NULL;
}

// sgemmNN(a, b, m, n, k, out): out[i·n + j] = Σ_p a[i·k + p]·b[p·n + j], b is [k, n]; overwrites out. The
// screened correlate's projections contract over a chunk's neurons, which are its rows: this saves transposing
// the chunk first.
static napi_value SgemmNN(napi_env env, napi_callback_info info) {
  GemmArgs g;
  if (gemm_args(env, info, "gemmNN", &g) != 1) return NULL;
  int m = (int)g.m, n = (int)g.n, k = (int)g.k;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, g.a, k, g.b, n, 0.0f, g.out, n);
  return NULL;
}

// setThreads(n): OpenBLAS's thread count for later calls (process-wide: the library has one pool).
static napi_value SetThreads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t threads;
  if (argc != 1 || !dim_arg(env, argv[0], "threads", &threads)) return NULL;
  if (threads < 1) {
    napi_throw_range_error(env, NULL, "sgemm: threads must be at least 1");
    return NULL;
  }
  openblas_set_num_threads((int)threads);
  return NULL;
}

static napi_status set_string(napi_env env, napi_value object, const char* key, const char* value) {
  napi_value v;
  napi_status s = napi_create_string_utf8(env, value, NAPI_AUTO_LENGTH, &v);
  return s == napi_ok ? napi_set_named_property(env, object, key, v) : s;
}

static napi_status set_int(napi_env env, napi_value object, const char* key, int value) {
  napi_value v;
  napi_status s = napi_create_int32(env, value, &v);
  return s == napi_ok ? napi_set_named_property(env, object, key, v) : s;
}

// info(): { config, corename, threads, parallel } where parallel is 0 sequential, 1 pthreads, 2 OpenMP.
static napi_value Info(napi_env env, napi_callback_info info) {
  (void)info;
  static const char* const parallel_names[] = {"sequential", "pthreads", "openmp"};
  int parallel = openblas_get_parallel();
  napi_value result;
  CHECK(env, napi_create_object(env, &result));
  CHECK(env, set_string(env, result, "config", openblas_get_config()));
  CHECK(env, set_string(env, result, "corename", openblas_get_corename()));
  CHECK(env, set_int(env, result, "threads", openblas_get_num_threads()));
  CHECK(env, set_string(env, result, "parallel", parallel >= 0 && parallel <= 2 ? parallel_names[parallel] : "unknown"));
  return result;
}

NAPI_MODULE_INIT() {  // context-aware: loadable from worker threads too
  napi_property_descriptor properties[] = {
      {"sgemm", NULL, Sgemm, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sgemmNN", NULL, SgemmNN, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setThreads", NULL, SetThreads, NULL, NULL, NULL, napi_enumerable, NULL},
      {"info", NULL, Info, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties) != napi_ok) return NULL;
  return exports;
}
